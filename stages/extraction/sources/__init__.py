"""Dataset sources. Importing this package registers every layout."""

from stages.extraction.sources import affectnet, au_datasets, ckplus, fer2013, generic, hdf5, rafdb, videos  # noqa: F401  (registration)
from stages.extraction.sources.base import SOURCES, Manifest, SourceError, build_manifest, get_source

__all__ = ["SOURCES", "Manifest", "SourceError", "build_manifest", "get_source"]

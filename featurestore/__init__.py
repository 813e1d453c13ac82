"""The feature store: the only package that touches Zarr (layout, keys, completion, locks, readers)."""

from featurestore.completion import StepGroup
from featurestore.keys import StepSpec, UnhashableSpecError, canonical_json, step_key
from featurestore.readers import GroupReader, IncompleteGroupError
from featurestore.status import SampleStatus
from featurestore.steps import Step, StepOutput
from featurestore.store import ArraySpec, FeatureStore, StoreError

__all__ = [
    "ArraySpec",
    "FeatureStore",
    "GroupReader",
    "IncompleteGroupError",
    "SampleStatus",
    "StepGroup",
    "Step",
    "StepOutput",
    "StepSpec",
    "StoreError",
    "UnhashableSpecError",
    "canonical_json",
    "step_key",
]

"""Data made here, with labels known by construction: the labelled face generator, videos of its
faces, and the real-photo demo catalogue. Parsers of real dataset layouts live in ``stages/extraction/sources``."""

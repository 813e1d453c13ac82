"""Stage 1: frozen encoders over datasets into the feature store — sources (dataset layouts and
their label maps), encoders, media decoding, the extraction step, windows over videos and prompt
lexicons. Nothing here knows of stage 2 (stages/training), which reads what this writes."""

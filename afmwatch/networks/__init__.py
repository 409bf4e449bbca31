"""Network definitions, input pipelines, model files and the model store."""

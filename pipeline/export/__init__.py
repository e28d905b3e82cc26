"""Students leave the pipeline: transformers folders (hf.py), ONNX (onnx.py, graph.py) and model cards (card.py);
`python -m pipeline export` (run.py) writes them all. Light on purpose: the workflow imports the file names."""

HF_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")  # what `save_pretrained` writes
ONNX_FILE = "model.onnx"

"""Hugging Face Space entry point: the dog-breed Gradio demo, standalone.

The model comes from DOG_BREED_MODEL_DIR, else ./model (a serving folder: model.onnx + model_card.json), else what
`dog-breed serve` would choose. Predictions are logged to DOG_BREED_STORE_URL, else ./predictions.db.
Run it locally with `python app.py`; `dog-breed space OUT` assembles a Space around it.
"""
from dog_breed_classifier.app import space_demo
from dog_breed_classifier.images import MAX_UPLOAD_BYTES

demo = space_demo()

if __name__ == "__main__":
    demo.launch(max_file_size=MAX_UPLOAD_BYTES)   # the API's upload limit

"""The ceiling of the HTTP stack: a FastAPI route that returns a constant, nothing else.

Same server settings as the product (uvicorn, uvloop, httptools, no access log).
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()
REPLY = {
    "label": "3",
    "confidence": 0.98,
    "probabilities": {str(digit): 0.002 for digit in range(10)},
    "model_version": "v0001",
    "request_id": "0" * 32,
}


@app.post("/predict")
async def predict() -> dict:
    return REPLY

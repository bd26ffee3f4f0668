"""Sentences per second of sentence-transformers on torch (CPU) for the cases
`faas-runtime-bench --only-embed` measures, over the sentences it passes. Prints JSON.

    st_throughput.py MODEL_DIR SENTENCES.json ROUNDS

The Python to run it with: `service-runtime/benches/torch-venv.sh` makes the venv and
prints it.
"""

import json
import sys
import threading
import time

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer


def main() -> None:
    model_dir, path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    texts = json.load(open(path))
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(texts[:32], batch_size=32)

    def encode(chunk):
        model.encode(chunk, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    def one_caller():
        for i in range(0, len(texts), 32):
            encode(texts[i : i + 32])

    def two_callers():
        half = (len(texts) + 1) // 2
        parts = [texts[:half], texts[half:]]

        def run(part):
            for i in range(0, len(part), 32):
                encode(part[i : i + 32])

        threads = [threading.Thread(target=run, args=(p,)) for p in parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    cases = {
        "calls of 32, one caller": one_caller,
        "calls of 32, two callers": two_callers,
        "one call of all": lambda: encode(texts),
    }
    rates = {}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, case in cases.items():
                started = time.perf_counter()
                case()
                rate = len(texts) / (time.perf_counter() - started)
                rates[name] = max(rates.get(name, 0.0), rate)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "sentence_transformers": sentence_transformers.__version__,
                "threads": torch.get_num_threads(),
                "rates": rates,
            }
        )
    )


if __name__ == "__main__":
    main()

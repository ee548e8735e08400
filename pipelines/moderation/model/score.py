#!/usr/bin/env python3
"""Scores texts with the model, without Kafka: the eval's entry point
(`npm run moderation -- eval`, pipelines/moderation/model/scorer.ts).

Protocol, one JSON object per line:
  stdout, first:   {"type": "ready", "model": NAME, "loadMs": ms}
  stdin, a batch:  {"id": any, "texts": [str, ...]}
  stdout, answer:  {"id": same, "scores": [float, ...], "ms": model-call time}
Stdin's end stops it. Nothing else is written to stdout (logs go to stderr).
"""
import json
import sys
import time

from model import Model


def main():
    model = Model()
    out = sys.stdout
    out.write(json.dumps({"type": "ready", "model": model.name, "loadMs": model.load_ms}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        t0 = time.perf_counter()
        scores = model.score(req["texts"])
        ms = (time.perf_counter() - t0) * 1000
        out.write(json.dumps({"id": req.get("id"), "scores": scores, "ms": ms}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()

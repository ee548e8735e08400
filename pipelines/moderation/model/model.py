"""The trained classifier, shared by the pipeline stage (processor.py) and the
eval's entry point (score.py).

alt-profanity-check is a linear SVM over character/word n-grams (scikit-learn,
calibrated to a probability) trained on English comments. Its weights ship
inside the PyPI wheel (profanity_check/data/*.joblib): nothing is fetched from
a model hub, at install or at run time.

Texts are scored in batches: one `vectorizer.transform` and one
`predict_proba` per batch, whatever its size, which is what makes the stage
cheap (a few ms per call beyond a fixed cost, see `npm run moderation -- eval`).
"""
import importlib.metadata
import re
import time
import unicodedata

PACKAGE = "alt-profanity-check"
VERSION = importlib.metadata.version(PACKAGE)
NAME = f"{PACKAGE}-{VERSION}"

# Format and control characters (zero-width spaces, bidi marks, ...) are inserted
# to split words; the model's tokenizer would see two harmless halves.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u180e\u034f]")
_SPACES = re.compile(r"\s+")


def normalize(text):
    """NFKC (full-width 'ｆｕｃｋ' -> 'fuck'), invisible characters removed, spaces
    collapsed. The model lower-cases by itself. Like the rules' normalizeText,
    minus what only word lists need (homoglyphs, leetspeak)."""
    t = unicodedata.normalize("NFKC", text)
    t = "".join(ch for ch in t if unicodedata.category(ch) not in ("Cf", "Cc") or ch in "\t\n")
    t = _INVISIBLE.sub("", t)
    return _SPACES.sub(" ", t).strip()


class Model:
    """Loads the classifier (a few seconds: numpy, scipy, scikit-learn and the joblib files)."""

    def __init__(self):
        t0 = time.perf_counter()
        from profanity_check import predict_prob  # imported here: loading is what takes the time

        self._predict_prob = predict_prob
        self.name = NAME
        # One call warms up whatever is lazily initialised, so the first real batch is not slower.
        predict_prob(["warm up"])
        self.load_ms = (time.perf_counter() - t0) * 1000

    def score(self, texts):
        """Scores a batch in one model call: the probability that each text is offensive."""
        if not texts:
            return []
        return [float(p) for p in self._predict_prob([normalize(t) for t in texts])]

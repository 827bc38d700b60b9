"""anrl-ray: hyperparameter search for ANRL face anti-spoofing on Ray.

Label convention (used everywhere in this package, as in the reference code):
``0 = live (bona fide)``, ``1 = spoof (presentation attack)``; a model's score is
``P(spoof) = softmax(logits)[:, 1]``.
"""

__version__ = "0.1.0"

LIVE = 0
SPOOF = 1

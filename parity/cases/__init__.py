"""The parity cases: pytest modules that compare tinynn against Keras, shipped with the package.

``python -m parity`` runs them with its recorder; ``make test`` (pytest) collects them too.
"""

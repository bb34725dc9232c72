"""Development tools for s2s-pipeline: stand-ins, the demo and test harnesses.

Not part of the product: this package lives in the repository's ``devtools/``
folder, is installed by ``make`` for development, and is never in the
``s2s-pipeline`` wheel.
"""

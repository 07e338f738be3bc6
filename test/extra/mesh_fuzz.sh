#!/usr/bin/env bash
# CI run of the mesh fuzz targets (TAP): 60 s of fuzzing by default
# (ALX_MESH_FUZZ_SECONDS); bench/mesh.sh --fuzz runs it longer.
exec "$(dirname "$0")/../fuzz/run.sh" "${ALX_MESH_FUZZ_SECONDS:-60}"

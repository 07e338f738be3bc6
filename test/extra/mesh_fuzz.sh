#!/usr/bin/env bash
# CI smoke run of the mesh fuzz target (30 s); bench/mesh.sh runs it longer.
exec "$(dirname "$0")/../fuzz/run.sh" "${ALX_MESH_FUZZ_SECONDS:-30}"

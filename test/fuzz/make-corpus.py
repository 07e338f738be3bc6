#!/usr/bin/python3
"""Writes the seed corpus of the mesh fuzz targets into test/fuzz/corpus/.

The corpus is kept in git (small files, each at most 64 KB); run this only
to rebuild it from test/gen/genmesh.py, then check that test/fuzz/run.sh
still replays every file cleanly and commit the result.

  corpus/geom/    triangle soups for geom_fuzz.c (our metrics code only)
  corpus/decode/  selector byte (0..6: the format hint) + file, for
                  mesh_fuzz.c (parsers, assimp)

Left out of corpus/decode on purpose: the files whose only effect is known
to be inside assimp 5.2.5 (the PLY count and list bombs make assimp
allocate gigabytes before anything of ours runs: an out-of-memory report in
every fuzzing job), the 3MF zip bomb and the 1.3 MB star polygon (too
large); test/t/020_mesh_hostile.pl runs all of them through the real helper
with its limits.
"""
import os
import random
import struct
import sys

top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(top, "test", "gen"))
import genmesh  # noqa: E402

MAX = 64 * 1024
out = os.path.join(top, "test", "fuzz", "corpus")
HINT = {"stl": 0, "stla": 0, "obj": 1, "ply": 2, "plyb": 2, "gltf": 3, "glb": 4, "3mf": 5, "3mfz": 5}
SKIP_HOSTILE = {"zip_bomb.3mf", "star_polygon.obj", "ply_count_bomb_ascii.ply", "ply_count_bomb_bin.ply",
                "ply_list_bomb.ply"}


def write(sub, name, data):
    if len(data) > MAX:
        return
    d = os.path.join(out, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as fh:
        fh.write(data)


def soup(mesh):
    v, f = mesh
    assert len(v) <= 64
    b = bytes([len(v) - 1])
    for x, y, z in v:
        b += struct.pack("<fff", x, y, z)
    for a, c, e in f:
        b += struct.pack("<HHH", a, c, e)
    return b


def main():
    for shape in ["cube", "open", "twoshells", "void", "degenerate", "nonmanifold", "inverted", "nested", "tinycube", "far"]:
        for fmt in HINT:
            write("decode", "%s.%s" % (shape, fmt), bytes([HINT[fmt]]) + genmesh.encode(genmesh.shape(shape), fmt))
        try:
            write("geom", shape + ".soup", soup(genmesh.shape(shape)))
        except AssertionError:
            pass
    for name, data in sorted(genmesh.hostile_cases().items()):
        if name not in SKIP_HOSTILE:
            write("decode", "hostile." + name, bytes([6]) + data)
    rnd = random.Random(20261202)
    write("geom", "random.soup", bytes(rnd.getrandbits(8) for _ in range(2000)))
    nan = struct.pack("<f", float("nan"))
    write("geom", "nan.soup", bytes([2]) + nan * 9 + struct.pack("<HHH", 0, 1, 2))
    write("geom", "oob.soup", bytes([2]) + struct.pack("<fffffffff", 0, 0, 0, 1, 0, 0, 0, 1, 0)
          + struct.pack("<HHHHHH", 0, 1, 4, 0, 0, 0))


if __name__ == "__main__":
    main()

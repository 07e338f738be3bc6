#!/usr/bin/python3
"""Deterministic mesh fixtures for the alexandrite mesh tests.

Usage:
  genmesh.py SHAPE FORMAT [--b64] [--out FILE] [--unit U] [--scale S] [--mirror] [--shuffle] [--div D]
  genmesh.py --hostile DIR [--datadir PGDATA]   write the hostile corpus
  genmesh.py --expect SHAPE                      print V and A of the shape

SHAPE:  cube, ring, torus, open, twoshells, overlap, void, nested, inverted,
        flipped, degenerate, nonmanifold, bigcube, tinycube, far, line
        (and N-triangle tori for benchmarks: torus:NU:NV)
        walls of known thickness: plate:T, shell:W (hollow cube), twoplates
        (1.2 and 0.7 mm), ringthin (1.5 mm band, 0.6 mm over 10 degrees),
        torusfine (tube 3 mm), plateflip (0.8 mm, every 7th face wound
        backwards), plateinv (0.5 mm, inside out)
--div D divides every coordinate by D (a fixture drawn in inches: --div 25.4)
FORMAT: stl, stla, obj, ply, plyb, gltf, glb, 3mf, 3mfz

Only the Python standard library is used (struct, zlib, zipfile, json).
The generated values are exact where the geometry allows (integer cube
coordinates) and otherwise differ from the closed forms only by the float32
rounding of the stored coordinates.
"""
import base64
import io
import json
import math
import os
import struct
import sys
import zipfile


# ---------------------------------------------------------------- shapes ---

def box(x0, y0, z0, x1, y1, z1):
    v = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0),
         (x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)]
    f = [(0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4),
         (1, 2, 6), (1, 6, 5), (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7)]
    return v, f


def merge(*meshes):
    v, f = [], []
    for mv, mf in meshes:
        o = len(v)
        v += mv
        f += [(a + o, b + o, c + o) for a, b, c in mf]
    return v, f


def flip(mesh):
    v, f = mesh
    return v, [(a, c, b) for a, b, c in f]


def signed_volume(mesh):
    v, f = mesh
    return math.fsum(
        (v[a][0] * (v[b][1] * v[c][2] - v[b][2] * v[c][1])
         - v[a][1] * (v[b][0] * v[c][2] - v[b][2] * v[c][0])
         + v[a][2] * (v[b][0] * v[c][1] - v[b][1] * v[c][0])) / 6.0
        for a, b, c in f)


def area(mesh):
    v, f = mesh
    tot = []
    for a, b, c in f:
        e1 = [v[b][k] - v[a][k] for k in range(3)]
        e2 = [v[c][k] - v[a][k] for k in range(3)]
        n = (e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2],
             e1[0] * e2[1] - e1[1] * e2[0])
        tot.append(0.5 * math.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2))
    return math.fsum(tot)


def outward(mesh):
    return mesh if signed_volume(mesh) >= 0 else flip(mesh)


def ring(n=64, R=10.0, r=8.5, h=4.0):
    """Annular prism (a band ring): genus 1."""
    v = []
    for k in range(n):
        t = 2 * math.pi * k / n
        c, s = math.cos(t), math.sin(t)
        v += [(R * c, R * s, 0.0), (R * c, R * s, h), (r * c, r * s, 0.0), (r * c, r * s, h)]
    f = []
    for k in range(n):
        j = (k + 1) % n
        ob, ot, ib, it = 4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3
        ob2, ot2, ib2, it2 = 4 * j, 4 * j + 1, 4 * j + 2, 4 * j + 3
        f += [(ob, ob2, ot2), (ob, ot2, ot)]        # outer wall
        f += [(ib, it2, ib2), (ib, it, it2)]        # inner wall
        f += [(ot, ot2, it2), (ot, it2, it)]        # top
        f += [(ob, ib2, ob2), (ob, ib, ib2)]        # bottom
    return outward((v, f))


def torus(nu=40, nv=20, R=10.0, r=1.5):
    v = []
    for i in range(nu):
        u = 2 * math.pi * i / nu
        for j in range(nv):
            w = 2 * math.pi * j / nv
            v.append(((R + r * math.cos(w)) * math.cos(u),
                      (R + r * math.cos(w)) * math.sin(u), r * math.sin(w)))
    f = []
    for i in range(nu):
        for j in range(nv):
            a = i * nv + j
            b = ((i + 1) % nu) * nv + j
            c = ((i + 1) % nu) * nv + (j + 1) % nv
            d = i * nv + (j + 1) % nv
            f += [(a, b, c), (a, c, d)]
    return outward((v, f))


def ring_thin(n=256, r=8.5, R=10.0, t=0.6, notch_deg=10.0, h=4.0):
    """Band ring 1.5 mm thick with one thin spot: over notch_deg around
    +x the outer wall is at r + t (t = 0.6 mm).  Both walls are arcs of the
    same centre there, so the wall is t by construction."""
    v, f = [], []
    for k in range(n):
        a = 2 * math.pi * k / n
        deg = math.degrees(a)
        deg = deg - 360 if deg > 180 else deg
        Ro = r + t if abs(deg) <= notch_deg / 2 + 1e-9 else R
        c, s_ = math.cos(a), math.sin(a)
        v += [(Ro * c, Ro * s_, 0.0), (Ro * c, Ro * s_, h), (r * c, r * s_, 0.0), (r * c, r * s_, h)]
    for k in range(n):
        j = (k + 1) % n
        ob, ot, ib, it = 4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3
        ob2, ot2, ib2, it2 = 4 * j, 4 * j + 1, 4 * j + 2, 4 * j + 3
        f += [(ob, ob2, ot2), (ob, ot2, ot), (ib, it2, ib2), (ib, it, it2),
              (ot, ot2, it2), (ot, it2, it), (ob, ib2, ob2), (ob, ib, ib2)]
    return outward((v, f))


def grid_plate(sx, sy, t, n):
    """A closed plate sx x sy x t whose top and bottom are n x n grids of
    quads (two triangles each): many faces, the same wall everywhere."""
    v, f = [], []
    idx = {}

    def vid(p):
        if p not in idx:
            idx[p] = len(v)
            v.append(p)
        return idx[p]

    def quad(a, b, c, d):
        f.extend([(vid(a), vid(b), vid(c)), (vid(a), vid(c), vid(d))])

    xs = [sx * i / n for i in range(n + 1)]
    ys = [sy * i / n for i in range(n + 1)]
    for i in range(n):
        for j in range(n):
            x0, x1, y0, y1 = xs[i], xs[i + 1], ys[j], ys[j + 1]
            quad((x0, y0, t), (x1, y0, t), (x1, y1, t), (x0, y1, t))      # top, up
            quad((x0, y0, 0.0), (x0, y1, 0.0), (x1, y1, 0.0), (x1, y0, 0.0))  # bottom, down
    for i in range(n):
        x0, x1 = xs[i], xs[i + 1]
        quad((x0, 0.0, 0.0), (x1, 0.0, 0.0), (x1, 0.0, t), (x0, 0.0, t))
        quad((x1, sy, 0.0), (x0, sy, 0.0), (x0, sy, t), (x1, sy, t))
        y0, y1 = ys[i], ys[i + 1]
        quad((sx, y0, 0.0), (sx, y1, 0.0), (sx, y1, t), (sx, y0, t))
        quad((0.0, y1, 0.0), (0.0, y0, 0.0), (0.0, y0, t), (0.0, y1, t))
    return outward((v, f))


def shape(name):
    if name.startswith("plate:"):
        # a 20 x 20 mm plate T mm thick: its wall is T
        return box(0, 0, 0, 20, 20, float(name.split(":")[1]))
    if name.startswith("shell:"):
        # a hollow 20 mm cube whose walls are W mm thick (an inner void)
        w = float(name.split(":")[1])
        return merge(box(0, 0, 0, 20, 20, 20), flip(box(w, w, w, 20 - w, 20 - w, 20 - w)))
    if name == "twoplates":
        # two bodies: 1.2 mm and 0.7 mm thick
        return merge(box(0, 0, 0, 10, 10, 1.2), box(20, 0, 0, 30, 10, 0.7))
    if name == "ringthin":
        return ring_thin()
    if name == "torusfine":
        return torus(256, 64, 10.0, 1.5)
    if name == "plateflip":
        # a 0.8 mm plate, finely split, with every 7th face wound backwards
        v, f = grid_plate(20, 20, 0.8, 16)
        return v, [(a, c, b) if i % 7 == 3 else (a, b, c) for i, (a, b, c) in enumerate(f)]
    if name == "plateinv":
        return flip(box(0, 0, 0, 20, 20, 0.5))
    if name == "cube":
        return box(0, 0, 0, 10, 10, 10)
    if name == "bigcube":
        return box(0, 0, 0, 1000, 1000, 1000)
    if name == "tinycube":
        return box(0, 0, 0, 0.5, 0.5, 0.5)
    if name == "far":
        return box(10000, 10000, 10000, 10010, 10010, 10010)
    if name == "ring":
        return ring()
    if name == "torus":
        return torus()
    if name.startswith("torus:"):
        _, nu, nv = name.split(":")
        return torus(int(nu), int(nv))
    if name == "open":
        v, f = box(0, 0, 0, 10, 10, 10)
        return v, f[:2] + f[4:]               # top removed
    if name == "twoshells":
        return merge(box(0, 0, 0, 10, 10, 10), box(20, 0, 0, 30, 10, 10))
    if name == "overlap":
        return merge(box(0, 0, 0, 10, 10, 10), box(5, 5, 5, 15, 15, 15))
    if name == "void":
        return merge(box(0, 0, 0, 20, 20, 20), flip(box(5, 5, 5, 15, 15, 15)))
    if name == "nested":
        return merge(box(0, 0, 0, 20, 20, 20), box(5, 5, 5, 15, 15, 15))
    if name == "inverted":
        return flip(box(0, 0, 0, 10, 10, 10))
    if name == "flipped":
        v, f = torus(100, 50)
        return v, [(a, c, b) if i % 100 == 7 else (a, b, c) for i, (a, b, c) in enumerate(f)]
    if name == "degenerate":
        v, f = box(0, 0, 0, 10, 10, 10)
        v = v + [(0, 0, 0), (5, 0, 0), (10, 0, 0)]
        return v, f + [(8, 9, 10), (0, 0, 1)]    # collinear, repeated
    if name == "nonmanifold":
        v, f = box(0, 0, 0, 10, 10, 10)
        return v, f + [f[0]]
    raise SystemExit("unknown shape %s" % name)


# --------------------------------------------------------------- writers ---

def stl_binary(mesh):
    v, f = mesh
    out = [b"alexandrite test fixture".ljust(80, b" "), struct.pack("<I", len(f))]
    for a, b, c in f:
        out.append(struct.pack("<12fH", 0, 0, 0, *v[a], *v[b], *v[c], 0))
    return b"".join(out)


def stl_ascii(mesh):
    v, f = mesh
    out = ["solid fixture"]
    for a, b, c in f:
        out.append(" facet normal 0 0 0\n  outer loop")
        for i in (a, b, c):
            out.append("   vertex %.9g %.9g %.9g" % v[i])
        out.append("  endloop\n endfacet")
    out.append("endsolid fixture\n")
    return "\n".join(out).encode()


def obj(mesh, quads=False):
    v, f = mesh
    out = ["# alexandrite fixture", "o fixture"]
    out += ["v %.9g %.9g %.9g" % p for p in v]
    out += ["f %d %d %d" % (a + 1, b + 1, c + 1) for a, b, c in f]
    return ("\n".join(out) + "\n").encode()


def ply_ascii(mesh):
    v, f = mesh
    out = ["ply", "format ascii 1.0", "element vertex %d" % len(v),
           "property float x", "property float y", "property float z",
           "element face %d" % len(f), "property list uchar int vertex_indices",
           "end_header"]
    out += ["%.9g %.9g %.9g" % p for p in v]
    out += ["3 %d %d %d" % t for t in f]
    return ("\n".join(out) + "\n").encode()


def ply_binary(mesh):
    v, f = mesh
    head = "\n".join(["ply", "format binary_little_endian 1.0",
                      "element vertex %d" % len(v), "property float x",
                      "property float y", "property float z",
                      "element face %d" % len(f),
                      "property list uchar int vertex_indices", "end_header"]) + "\n"
    body = b"".join(struct.pack("<3f", *p) for p in v)
    body += b"".join(struct.pack("<B3i", 3, *t) for t in f)
    return head.encode() + body


def gltf_parts(mesh, scale=1.0, mirror=False, unit_mm=1.0):
    """glTF JSON and binary buffer; positions in metres (mm / 1000)."""
    v, f = mesh
    pos = b"".join(struct.pack("<3f", *(c / 1000.0 * unit_mm for c in p)) for p in v)
    idx = b"".join(struct.pack("<3I", *t) for t in f)
    mins = [min(p[k] for p in v) / 1000.0 * unit_mm for k in range(3)]
    maxs = [max(p[k] for p in v) / 1000.0 * unit_mm for k in range(3)]
    node = {"mesh": 0, "name": "fixture"}
    if scale != 1.0 or mirror:
        node["scale"] = [-scale if mirror else scale, scale, scale]
    doc = {
        "asset": {"version": "2.0", "generator": "alexandrite genmesh"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"children": [1]}, node],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}]}],
        "buffers": [{"byteLength": len(pos) + len(idx)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(pos), "target": 34962},
            {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx), "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(v), "type": "VEC3",
             "min": mins, "max": maxs},
            {"bufferView": 1, "componentType": 5125, "count": 3 * len(f), "type": "SCALAR"},
        ],
    }
    doc["scenes"][0]["nodes"] = [0]
    return doc, pos + idx


def gltf(mesh, **kw):
    doc, buf = gltf_parts(mesh, **kw)
    doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(buf).decode()
    return json.dumps(doc, indent=1).encode()


def glb_pack(doc, buf):
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    buf += b"\0" * (-len(buf) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js
    if buf:
        body += struct.pack("<II", len(buf), 0x004E4942) + buf
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def glb(mesh, **kw):
    doc, buf = gltf_parts(mesh, **kw)
    return glb_pack(doc, buf)


CT = ('<?xml version="1.0" encoding="UTF-8"?>\n<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
      '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
      '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/></Types>')
RELS = ('<?xml version="1.0" encoding="UTF-8"?>\n<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Target="/3D/3dmodel.model" Id="rel0" Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>')


def model_xml(mesh, unit="millimeter", div=1.0):
    v, f = mesh
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<model unit="%s" xml:lang="en-US" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">' % unit,
           '<resources><object id="1" type="model"><mesh><vertices>']
    out += ['<vertex x="%.9g" y="%.9g" z="%.9g"/>' % tuple(c / div for c in p) for p in v]
    out.append('</vertices><triangles>')
    out += ['<triangle v1="%d" v2="%d" v3="%d"/>' % t for t in f]
    out.append('</triangles></mesh></object></resources><build><item objectid="1"/></build></model>')
    return "\n".join(out)


def zip_bytes(entries, compress):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            z.writestr(zi, data)
    return bio.getvalue()


def threemf(mesh, unit="millimeter", compress=False):
    div = {"millimeter": 1.0, "inch": 25.4, "centimeter": 10.0, "meter": 1000.0,
           "micron": 0.001, "foot": 304.8}[unit]
    return zip_bytes([("[Content_Types].xml", CT), ("_rels/.rels", RELS),
                      ("3D/3dmodel.model", model_xml(mesh, unit, div))], compress)


def encode(mesh, fmt, unit="millimeter", scale=1.0, mirror=False):
    if fmt == "stl":
        return stl_binary(mesh)
    if fmt == "stla":
        return stl_ascii(mesh)
    if fmt == "obj":
        return obj(mesh)
    if fmt == "ply":
        return ply_ascii(mesh)
    if fmt == "plyb":
        return ply_binary(mesh)
    if fmt == "gltf":
        return gltf(mesh, scale=scale, mirror=mirror)
    if fmt == "glb":
        return glb(mesh, scale=scale, mirror=mirror)
    if fmt == "3mf":
        return threemf(mesh, unit)
    if fmt == "3mfz":
        return threemf(mesh, unit, compress=True)
    raise SystemExit("unknown format %s" % fmt)


# --------------------------------------------------------------- hostile ---

def hostile_cases(datadir=None, want=None):
    """The hostile corpus: case name (with extension) -> bytes.  The zip
    bomb costs seconds to compress, so it is only built when wanted."""
    cube = box(0, 0, 0, 10, 10, 10)
    cases = {}
    stl = stl_binary(cube)
    cases["empty.stl"] = b""
    cases["truncated.stl"] = stl[:-7]
    cases["trailing.stl"] = stl + b"X"
    cases["lying_count.stl"] = stl[:80] + struct.pack("<I", 0x7FFFFFFF) + stl[84:]
    cases["header_only.stl"] = stl[:84]
    cases["solid_garbage.stl"] = b"solid x\n facet normal 0 0 0\n outer loop\n vertex 1 2\n" * 3
    cases["nan.stl"] = stl_binary(([(float("nan"), 0, 0)] + cube[0][1:], cube[1]))
    # the native binary STL reader: NaN/Inf in the (ignored) normal and
    # attribute bytes parse; a count of 2^32-1 is refused by size
    cases["stl_nan_normals.stl"] = b"".join(
        [b"x" * 80, struct.pack("<I", len(cube[1]))]
        + [struct.pack("<12fH", float("nan"), float("inf"), -0.0, *cube[0][a], *cube[0][b], *cube[0][c], 0xFFFF)
           for a, b, c in cube[1]])
    cases["stl_count_max.stl"] = stl[:80] + struct.pack("<I", 0xFFFFFFFF) + stl[84:134]
    # 5,000 triangles stacked 0.01 micron apart, all on one edge: every
    # wall-thickness ray would visit every triangle (quadratic), and glibc's
    # qsort of the 10,000 uses of one vertex asks the kernel for the memory
    # size; the analysis must still end cleanly, wall check skipped
    cases["stl_stacked_5k.stl"] = b"".join(
        [b"stacked".ljust(80, b" "), struct.pack("<I", 5000)]
        + [struct.pack("<12fH", 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 10, i * 1e-5, 0) for i in range(5000)])
    cases["inf.obj"] = b"v inf 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    cases["nan.obj"] = b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    cases["oob_index.obj"] = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999\n"
    cases["neg_index.obj"] = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 -99\n"
    cases["only_vertices.obj"] = b"v 0 0 0\nv 1 0 0\nv 0 1 0\n"
    cases["only_lines.obj"] = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nl 1 2\nl 2 3\n"
    passwd = "/etc/passwd"
    conf = os.path.join(datadir, "postgresql.conf") if datadir else "postgresql.conf"
    cases["mtllib_passwd.obj"] = ("mtllib %s\nusemtl root\n" % passwd).encode() + obj(cube)
    cases["mtllib_conf.obj"] = ("mtllib %s\n" % conf).encode() + obj(cube)
    cases["mtllib_relative.obj"] = b"mtllib ../../../../../../etc/passwd\nmtllib postgresql.conf\n" + obj(cube)
    doc, buf = gltf_parts(cube)
    doc["buffers"][0]["uri"] = passwd
    doc["buffers"][0]["byteLength"] = 36
    doc["bufferViews"][0]["byteLength"] = 36
    doc["accessors"][0]["count"] = 3
    doc["accessors"][1]["count"] = 3
    doc["bufferViews"][1]["byteOffset"] = 0
    doc["bufferViews"][1]["byteLength"] = 12
    cases["uri_passwd.gltf"] = json.dumps(doc).encode()
    doc["buffers"][0]["uri"] = conf
    cases["uri_conf.gltf"] = json.dumps(doc).encode()
    doc["buffers"][0]["uri"] = "postgresql.conf"
    cases["uri_relative.gltf"] = json.dumps(doc).encode()
    doc["buffers"][0]["uri"] = "file:///etc/passwd"
    cases["uri_fileurl.gltf"] = json.dumps(doc).encode()
    doc, buf = gltf_parts(cube)
    doc["accessors"][0]["count"] = 100000000
    cases["huge_accessor.glb"] = glb_pack(doc, buf)
    doc, buf = gltf_parts(cube)
    doc["accessors"][1]["byteOffset"] = 1 << 30
    cases["oob_accessor.glb"] = glb_pack(doc, buf)
    doc, buf = gltf_parts(cube)
    doc["nodes"] = [{"children": [i + 1]} for i in range(5000)] + [{"mesh": 0}]
    cases["deep_nodes.gltf"] = json.dumps(dict(doc, buffers=[{"byteLength": len(buf), "uri": "data:application/octet-stream;base64," + base64.b64encode(buf).decode()}])).encode()
    cases["deep_json.gltf"] = b"[" * 200000 + b"]" * 200000
    cases["cyclic_nodes.gltf"] = json.dumps(dict(gltf_parts(cube)[0], nodes=[{"children": [1]}, {"children": [0], "mesh": 0}],
                                                 buffers=[{"byteLength": len(buf), "uri": "data:application/octet-stream;base64," + base64.b64encode(buf).decode()}])).encode()
    cases["truncated.glb"] = glb(cube)[:100]
    cases["bad_magic_len.glb"] = b"glTF" + struct.pack("<II", 2, 0xFFFFFFF0) + b"\0" * 20
    # PLY count bombs
    cases["ply_count_bomb_ascii.ply"] = (b"ply\nformat ascii 1.0\nelement vertex 300000000\nproperty float x\n"
                                         b"property float y\nproperty float z\nelement face 1\n"
                                         b"property list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    cases["ply_count_bomb_bin.ply"] = (b"ply\nformat binary_little_endian 1.0\nelement vertex 400000000\nproperty float x\n"
                                       b"property float y\nproperty float z\nelement face 400000000\n"
                                       b"property list uchar int vertex_indices\nend_header\n" + b"\0" * 1024)
    cases["ply_truncated.ply"] = ply_binary(cube)[:-20]
    cases["ply_bad_index.ply"] = ply_ascii((cube[0], cube[1][:-1] + [(0, 1, 4000)]))
    cases["ply_list_bomb.ply"] = (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                                  b"property float z\nelement face 1\nproperty list uint int vertex_indices\nend_header\n"
                                  b"0 0 0\n1 0 0\n0 1 0\n4000000000 0 1 2\n")
    # 3MF: zip bomb (1 GiB of spaces), truncated archive, no model, external refs
    model = model_xml(cube)
    bomb = io.BytesIO()
    if want is not None and want != "zip_bomb.3mf":
        bomb = None
    with zipfile.ZipFile(bomb or io.BytesIO(), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CT)
        z.writestr("_rels/.rels", RELS)
        zi = zipfile.ZipInfo("3D/3dmodel.model", date_time=(2026, 1, 1, 0, 0, 0))
        zi.compress_type = zipfile.ZIP_DEFLATED
        with z.open(zi, "w", force_zip64=True) as w:
            w.write(model[:-8].encode())
            chunk = b" " * (1 << 20)
            for _ in range(1024 if bomb else 0):
                w.write(chunk)
            w.write(model[-8:].encode())
    if bomb is not None:
        cases["zip_bomb.3mf"] = bomb.getvalue()
    cases["truncated.3mf"] = threemf(cube)[:300]
    cases["no_model.3mf"] = zip_bytes([("[Content_Types].xml", CT)], False)
    cases["bad_unit.3mf"] = zip_bytes([("[Content_Types].xml", CT), ("_rels/.rels", RELS),
                                       ("3D/3dmodel.model", model.replace('unit="millimeter"', 'unit="parsec"'))], False)
    cases["xxe.3mf"] = zip_bytes([("[Content_Types].xml", CT), ("_rels/.rels", RELS),
                                  ("3D/3dmodel.model", '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + model.split("?>", 1)[1].replace("<resources>", "<metadata name=\"x\">&x;</metadata><resources>"))], False)
    cases["garbage.3mf"] = b"PK\x03\x04" + os.urandom(0) + bytes(range(256)) * 8
    # random bytes with and without a hint
    cases["random.bin"] = bytes((i * 7919 + 13) % 256 for i in range(4096))
    cases["zeros.stl"] = b"\0" * 4096
    cases["star_polygon.obj"] = star_polygon(32000)
    # the same face hidden from a check that splits lines at LF only: CR line
    # ends (assimp ends a line at CR too), and the face written over 320
    # lines joined by backslash continuations (assimp joins them)
    cases["star_polygon_cr.obj"] = star_polygon(32000).replace(b"\n", b"\r")
    cases["star_polygon_continued.obj"] = star_polygon(32000, per_line=100)
    # and in 4000 words: assimp's face parser reads "1-32000-31999..." as one
    # absolute index followed by relative ones, 8 vertices per word; the
    # prescan counts them as that parser does
    cases["star_polygon_chained.obj"] = star_polygon(32000, chained=8)
    # legitimate files written that way parse: the cube with CR line ends,
    # and with every face continued over two lines
    cases["cube_cr.obj"] = obj(cube).replace(b"\n", b"\r")
    cases["cube_continued.obj"] = b"\n".join(
        (l[:4] + b"\\\n" + l[4:]) if l.startswith(b"f ") else l for l in obj(cube).split(b"\n"))
    # headers that lie, cut short, or nest too deep (refused before assimp)
    cases["ply_header_cut.ply"] = b"ply\nformat binary_littl"
    cases["ply_4e9_vertices.ply"] = (b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\n"
                                     b"property float x\nproperty float y\nproperty float z\nelement face 1\n"
                                     b"property list uchar int vertex_indices\nend_header\n" + b"\0" * 64)
    cases["ply_list_bomb_bin.ply"] = (b"ply\nformat binary_big_endian 1.0\nelement vertex 3\nproperty float x\n"
                                      b"property float y\nproperty float z\nelement face 1\n"
                                      b"property list uint int vertex_indices\nend_header\n" + b"\0" * 36
                                      + struct.pack(">I3i", 4000000000, 0, 1, 2))
    cases["ply_unknown_header.ply"] = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nbogus line\nend_header\n0\n1\n2\n"
    cases["deep_json_object.gltf"] = b'{"asset":' + b"[" * 200000 + b"]" * 200000 + b"}"
    doc, buf = gltf_parts(cube)
    cases["glb_version1.glb"] = glb_pack(doc, buf)[:4] + struct.pack("<I", 1) + glb_pack(doc, buf)[8:]
    cases["glb_chunk_overrun.glb"] = glb_pack(doc, buf)[:12] + struct.pack("<I", 0x7FFFFFF0) + glb_pack(doc, buf)[16:]
    cases["deep_xml.3mf"] = zip_bytes([("[Content_Types].xml", CT), ("_rels/.rels", RELS),
                                       ("3D/3dmodel.model", model.replace("<resources>", "<resources>" + "<x>" * 100000 + "</x>" * 100000))], True)
    # Files assimp gives up on by itself (faultguard.c): a failed ai_assert()
    # and a recursion that runs the stack out must both be refusals (22P04),
    # never a crash.  A PLY face with an empty index list; a 3MF whose model
    # part fails its CRC-32 (one digit changed); a 3MF relationship to a
    # part the archive does not have; a glTF 1.0 accessor larger than its
    # buffer view; 3MF components and glTF 1.0 nodes that contain themselves.
    cases["ply_list_zero.ply"] = (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                                  b"property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n"
                                  b"0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n0\n")
    crc = bytearray(threemf(cube))
    at = crc.find(b'<vertex x="') + len(b'<vertex x="')
    crc[at] = ord("9") if crc[at] != ord("9") else ord("8")
    cases["3mf_bad_crc.3mf"] = bytes(crc)
    cases["3mf_rels_missing_part.3mf"] = zip_bytes([("[Content_Types].xml", CT),
                                                    ("_rels/.rels", RELS.replace("/3D/3dmodel.model", "/3D/missing.model")),
                                                    ("3D/3dmodel.model", model)], False)
    head3 = model.split("<resources>", 1)[0] + "<resources>"
    cases["3mf_component_self.3mf"] = zip_bytes([("[Content_Types].xml", CT), ("_rels/.rels", RELS), ("3D/3dmodel.model",
        head3 + '<object id="2" type="model"><components><component objectid="2"/></components></object>'
        '</resources><build><item objectid="2"/></build></model>')], False)
    cases["3mf_component_cycle.3mf"] = zip_bytes([("[Content_Types].xml", CT), ("_rels/.rels", RELS), ("3D/3dmodel.model",
        head3 + '<object id="2" type="model"><components><component objectid="3"/></components></object>'
        '<object id="3" type="model"><components><component objectid="2"/></components></object>'
        '</resources><build><item objectid="2"/></build></model>')], False)
    g1 = {"asset": {"version": "1.0"}, "scene": "s", "scenes": {"s": {"nodes": ["n"]}},
          "nodes": {"n": {"meshes": ["m"]}},
          "meshes": {"m": {"primitives": [{"attributes": {"POSITION": "a"}, "indices": "i", "mode": 4}]}},
          "accessors": {"a": {"bufferView": "bv", "componentType": 5126, "count": 3, "type": "VEC3", "byteOffset": 0},
                        "i": {"bufferView": "bv", "componentType": 5123, "count": 3, "type": "SCALAR", "byteOffset": 0}},
          "bufferViews": {"bv": {"buffer": "b", "byteOffset": 0, "byteLength": 36}},
          "buffers": {"b": {"byteLength": 36, "uri": "data:application/octet-stream;base64,"
                            + base64.b64encode(b"\0" * 36).decode()}}}
    d = json.loads(json.dumps(g1))
    d["nodes"]["n"]["children"] = ["n"]
    cases["gltf1_self_child.gltf"] = json.dumps(d).encode()
    d = json.loads(json.dumps(g1))
    d["accessors"]["a"]["count"] = 1000000000
    cases["gltf1_accessor_overrun.gltf"] = json.dumps(d).encode()
    # assimp checks offset + length against the buffer in 64-bit arithmetic
    # that wraps: an offset just below 2^64 passes and points before the
    # buffer (it read 16 bytes of the heap into the vertices).  The key may
    # be written with an escape, which the JSON parser decodes.
    doc, buf = gltf_parts(cube)
    d = json.loads(json.dumps(doc))
    d["bufferViews"][0]["byteOffset"] = 2 ** 64 - 16
    cases["glb_view_offset_wrap.glb"] = glb_pack(d, buf)
    d = json.loads(gltf(cube).decode())
    d["accessors"][0]["byteOffset"] = 2 ** 64 - 12
    cases["gltf_accessor_offset_wrap.gltf"] = json.dumps(d).replace(
        '"byteOffset": 18446744073709551604', '"byte\\u004fffset": 18446744073709551604').encode()
    return cases


def star_polygon(n, per_line=None, chained=None):
    """One concave polygon of n vertices: assimp's ear clipping is O(n^2),
    so 32,000 vertices (1.3 MB, below the 32,767 indices per face that
    assimp validates) would keep the parser busy for about 5 s of CPU; the
    helper refuses faces of more than 4096 vertices before assimp runs.
    With per_line, the face statement continues over lines of that many
    indices, each but the last ending in a backslash; with chained, each
    word holds that many indices (one absolute, then relative ones written
    without spaces, as assimp's face parser reads them)."""
    out = []
    for k in range(n):
        t = 2 * math.pi * k / n
        r = 10 if k % 2 == 0 else 5
        out.append("v %.9g %.9g 0" % (r * math.cos(t), r * math.sin(t)))
    idx = [str(i + 1) for i in range(n)]
    if chained:
        # vertex v (1-based) as a relative index: -(n + 1 - v)
        idx = [str(i) + "".join("-%d" % (n + 1 - (i + d)) for d in range(1, chained))
               for i in range(1, n + 1, chained)]
    if per_line:
        out.append("f " + " \\\n".join(" ".join(idx[i:i + per_line]) for i in range(0, n, per_line)))
    else:
        out.append("f " + " ".join(idx))
    return ("\n".join(out) + "\n").encode()


def hostile(outdir, datadir=None):
    """Write the hostile corpus: one file per case, named <case>.<ext>."""
    os.makedirs(outdir, exist_ok=True)
    cases = hostile_cases(datadir)
    for name, data in cases.items():
        with open(os.path.join(outdir, name), "wb") as fh:
            fh.write(data)
    return sorted(cases)


def main(argv):
    if len(argv) >= 2 and argv[0] == "--hostile":
        datadir = None
        if "--datadir" in argv:
            datadir = argv[argv.index("--datadir") + 1]
        for n in hostile(argv[1], datadir):
            print(n)
        return
    if len(argv) >= 2 and argv[0] == "--hostile-case":
        sys.stdout.buffer.write(base64.b64encode(hostile_cases(want=argv[1])[argv[1]]))
        return
    if len(argv) >= 2 and argv[0] == "--expect":
        m = shape(argv[1])
        print("%.17g %.17g" % (abs(signed_volume(m)), area(m)))
        return
    if len(argv) < 2:
        raise SystemExit(__doc__)
    name, fmt = argv[0], argv[1]
    opts = {"unit": "millimeter", "scale": 1.0, "mirror": False}
    out, b64, shuffle, div = None, False, False, 1.0
    i = 2
    while i < len(argv):
        a = argv[i]
        if a == "--b64":
            b64 = True
        elif a == "--out":
            i += 1
            out = argv[i]
        elif a == "--unit":
            i += 1
            opts["unit"] = argv[i]
        elif a == "--scale":
            i += 1
            opts["scale"] = float(argv[i])
        elif a == "--mirror":
            opts["mirror"] = True
        elif a == "--shuffle":
            shuffle = True
        elif a == "--div":
            i += 1
            div = float(argv[i])
        else:
            raise SystemExit("unknown option %s" % a)
        i += 1
    mesh = shape(name)
    if div != 1.0:
        mesh = ([tuple(c / div for c in p) for p in mesh[0]], mesh[1])
    if shuffle:
        # CAD exports rarely list triangles in a tidy grid order
        import random
        rnd = random.Random(20261122)
        v, f = mesh
        f = list(f)
        rnd.shuffle(f)
        mesh = (v, f)
    data = encode(mesh, fmt, **opts)
    if b64:
        data = base64.b64encode(data)
    if out:
        with open(out, "wb") as fh:
            fh.write(data)
    else:
        sys.stdout.buffer.write(data)


if __name__ == "__main__":
    main(sys.argv[1:])

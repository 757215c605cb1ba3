"""A deterministic, procedural multi-domain data set of coloured shapes.

Each class is a (colour, shape) pair such as "red circle": 6 colours x 8 shapes
= 48 classes. Within a class every example varies in size (the shape spans
about 44-76% of the image side), position, rotation (+-35 degrees), fill
(solid or outlined) and surface texture (plain, stripes, dots). Each example is
drawn in one of nine visual domains: five base ones,

  photo        smooth two-colour gradient background, soft shading and a drop
               shadow on the shape.
  sketch       paper background; the shape is a thin dark ink outline with a
               coloured stroke just inside it, and coloured hatching when solid.
  noisy        flat background, then strong Gaussian pixel noise.
  pattern      busy striped or checkered background in two muted colours.
  falsecolour  a photo with its red and green channels swapped, as in the
               false-colour composites of multispectral imagery: shape, texture
               and contrast are intact, but a red circle looks green, a green
               one red, an orange one lime; blue and yellow stay near their
               names. Most colour names are wrong for it, so a model that never
               saw the domain does poorly zero-shot, while the image still holds
               everything needed to tell the classes apart.

and, for world v2 (issue 14), four tinted domains: `tinted_photo`, `tinted_sketch`,
`tinted_noisy`, `tinted_pattern` are the four domains above seen through one fixed
colour cast, a rotation of the chroma plane by 24 degrees in YIQ (as a camera with a
strong, wrong white balance): red turns pink-magenta, orange salmon-red, yellow orange,
green lime, blue cyan-blue, purple violet (HSV hues move by -15 to -35 degrees); shape,
texture and luminance are kept. `tinted_noisy` also has a quieter sensor (noise std
20-35 instead of 30-50): at the noisy domain's level, zero-shot under the cast sat at the
25% floor that world v2 asks of a domain with room (README, "Room for prompts").
The cast is the same in all four, so one prompt can
learn it for all of them: they neither contradict each other nor need each other,
unlike `falsecolour` against the true-colour domains. None of them was seen in the
tiny CLIP's pretraining. `BASE_DOMAINS` are the five above (the default), and
`TINTED_DOMAINS` the four tinted ones.

Class colours are saturated and backgrounds are muted, so colour (and shape)
stay recoverable in every domain while raw pixels differ a lot between them.

Images are rendered with numpy from signed distance functions evaluated at the
pixel centres; edges are anti-aliased analytically (coverage = clip(0.5 - d, 0,
1) with d the signed distance in pixels), which matches supersampling without
its cost. Every (split, domain, class) block draws from its own random stream
`np.random.default_rng([seed, split, domain, class])`, so the same seed gives
identical bytes, train and test never share a stream, and selecting a subset of
classes or domains leaves the images of the others unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from fedprompt_jax.data import attributes, dataset

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "heart", "diamond", "crescent")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (35, 165, 60),
    "blue": (35, 90, 220),
    "yellow": (245, 205, 30),
    "purple": (140, 55, 180),
    "orange": (245, 130, 25),
}
BASE_DOMAINS: tuple[str, ...] = ("photo", "sketch", "noisy", "pattern", "falsecolour")
TINTED_DOMAINS: tuple[str, ...] = ("tinted_photo", "tinted_sketch", "tinted_noisy", "tinted_pattern")
# Every valid domain name. New names go at the end: a domain's index seeds its random
# stream, so appending keeps the bytes of every existing domain.
DOMAINS: tuple[str, ...] = BASE_DOMAINS + TINTED_DOMAINS
_FALSE_COLOUR_CHANNELS = (1, 0, 2)  # output (R, G, B) = input (G, R, B)
TINT_DEGREES = 24.0  # rotation of the YIQ chroma plane (I, Q) of the tinted domains
_TINTED_NOISE_SIGMA = (20.0, 35.0)  # tinted_noisy's pixel noise std (noisy: 30-50)
CLASS_NAMES: tuple[str, ...] = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)


# Nuisance ranges, in units of the image side unless noted.
_RADIUS = (0.22, 0.38)  # shape circumradius; the shape spans ~2 radii
_MAX_ROTATION = np.deg2rad(35.0)  # small enough that square != diamond
_TEXTURES = ("plain", "stripes", "dots")
_PAPER = np.array([243.0, 238.0, 225.0], np.float32)
_INK = np.array([35.0, 35.0, 40.0], np.float32)
_MAX_PIXELS_PER_CHUNK = 1 << 21  # bounds memory at large image sizes


def attribute_sentences(class_name: str) -> tuple[str, ...]:
  """Returns the 10 sentences describing `class_name` ("<colour> <shape>").

  They are data: `assets/attributes/shapes.json` (five shape facts, then five
  colour facts, each as "a photo of a <class>, which <fact>.").
  """
  return _attributes()[class_name]


@functools.cache
def _attributes() -> dict[str, tuple[str, ...]]:
  return attributes.load_attributes(attributes.shipped_path("shapes"), CLASS_NAMES)


def make_shapes(
    num_train_per_class_domain: int,
    num_test_per_class_domain: int,
    image_size: int = 32,
    seed: int = 0,
    domains: Sequence[str] = BASE_DOMAINS,
    classes: Sequence[str] | None = None,
) -> dataset.DataSource:
  """Renders the shapes data set.

  Args:
    num_train_per_class_domain: training examples per (class, domain) pair.
    num_test_per_class_domain: test examples per (class, domain) pair.
    image_size: side S of the square images.
    seed: non-negative integer seed; equal seeds give identical bytes.
    domains: names from `DOMAINS` (default `BASE_DOMAINS`, the untinted five);
      domain index i means domains[i].
    classes: names from `CLASS_NAMES` (default all 48); label i means
      classes[i].

  Returns:
    A DataSource whose splits hold [N, S, S, 3] uint8 images, with N =
    num_per_class_domain * len(classes) * len(domains), in a seeded random order.
  """
  classes = CLASS_NAMES if classes is None else tuple(classes)
  domains = tuple(domains)
  for name, valid, what in ((classes, CLASS_NAMES, "class"), (domains, DOMAINS, "domain")):
    unknown = [n for n in name if n not in valid]
    if unknown:
      raise ValueError(f"unknown shapes {what} names {unknown}; valid: {', '.join(valid)}")
  if image_size < 8:
    raise ValueError(f"image_size must be >= 8, got {image_size}")
  if seed < 0:
    raise ValueError(f"seed must be non-negative, got {seed}")
  splits = [
      _make_split(n, split_id, image_size, seed, domains, classes)
      for split_id, n in enumerate((num_train_per_class_domain, num_test_per_class_domain))
  ]
  return dataset.DataSource(
      name="shapes",
      class_names=classes,
      train=splits[0],
      test=splits[1],
      domain_names=domains,
      attributes={c: attribute_sentences(c) for c in classes},
  )


def _make_split(
    num_per_block: int, split_id: int, size: int, seed: int,
    domains: tuple[str, ...], classes: tuple[str, ...],
) -> dataset.Split:
  if num_per_block < 0:
    raise ValueError(f"examples per class and domain must be >= 0, got {num_per_block}")
  images, labels, domain_ids = [], [], []
  for d, domain in enumerate(domains):
    for c, class_name in enumerate(classes):
      rng = np.random.default_rng(
          [seed, split_id, DOMAINS.index(domain), CLASS_NAMES.index(class_name)])
      colour, shape = class_name.split(" ")
      images.append(_render_block(rng, shape, colour, domain, num_per_block, size))
      labels.append(np.full(num_per_block, c, np.int32))
      domain_ids.append(np.full(num_per_block, d, np.int32))
  order = np.random.default_rng([seed, split_id]).permutation(sum(map(len, labels)))
  return dataset.Split(
      images=np.concatenate(images)[order],
      labels=np.concatenate(labels)[order],
      domains=np.concatenate(domain_ids)[order],
  )


def _render_block(
    rng: np.random.Generator, shape: str, colour: str, domain: str, n: int, size: int,
) -> np.ndarray:
  """Renders n examples of one class in one domain: [n, size, size, 3] uint8."""
  # Per-example nuisances first, then per-pixel noise chunk by chunk (the chunk
  # size depends only on `size`, so the bytes stay a function of the inputs).
  radius = rng.uniform(*_RADIUS, n).astype(np.float32)
  centre = radius[:, None] + 0.02 + rng.uniform(0, 1, (n, 2)).astype(np.float32) * (
      1 - 2 * radius[:, None] - 0.04)
  angle = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION, n).astype(np.float32)
  solid = rng.uniform(size=n) < 0.5
  texture = rng.integers(0, len(_TEXTURES), n)
  rgb = np.array(COLOURS[colour], np.float32) * rng.uniform(0.85, 1.1, (n, 1))
  rgb = (rgb + rng.normal(0, 8, (n, 3))).astype(np.float32)
  style = _draw_domain_style(rng, domain, n)
  out = np.empty((n, size, size, 3), np.uint8)
  chunk = max(1, _MAX_PIXELS_PER_CHUNK // (size * size))
  for lo in range(0, n, chunk):
    sl = slice(lo, lo + chunk)
    geom = _Geometry(shape, size, centre[sl], radius[sl], angle[sl])
    sub_style = {k: v[sl] for k, v in style.items()}
    image = _DOMAIN_RENDERERS[domain](
        rng, geom, rgb[sl], solid[sl], texture[sl], sub_style)
    out[sl] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
  return out


def _draw_domain_style(rng: np.random.Generator, domain: str, n: int) -> dict[str, np.ndarray]:
  """Draws the per-example background parameters of a domain."""
  if domain == "tinted_noisy":  # the noisy scene with a quieter sensor (see the module doc)
    style = _draw_domain_style(rng, "noisy", n)
    style["sigma"] = (_TINTED_NOISE_SIGMA[0] + (style["sigma"] - 30) / 20 * (
        _TINTED_NOISE_SIGMA[1] - _TINTED_NOISE_SIGMA[0])).astype(np.float32)
    return style
  domain = _untinted(domain)
  if domain in ("photo", "falsecolour"):
    return {
        "c1": _muted(rng, n, (0.05, 0.35), (0.35, 0.9)),
        "c2": _muted(rng, n, (0.05, 0.35), (0.35, 0.9)),
        "direction": rng.uniform(0, 2 * np.pi, n).astype(np.float32),
        "light": rng.uniform(np.pi / 2, np.pi, n).astype(np.float32),
    }
  if domain == "sketch":
    return {"tint": rng.normal(0, 5, (n, 3)).astype(np.float32)}
  if domain == "noisy":
    return {
        "bg": _muted(rng, n, (0.0, 0.3), (0.3, 0.8)),
        "sigma": rng.uniform(30, 50, n).astype(np.float32),
    }
  return {  # pattern
      "c1": _muted(rng, n, (0.2, 0.5), (0.45, 0.95)),
      "c2": _muted(rng, n, (0.2, 0.5), (0.45, 0.95)),
      "checker": rng.uniform(size=n) < 0.5,
      "period": rng.uniform(0.06, 0.16, n).astype(np.float32),
      "direction": rng.uniform(0, np.pi, n).astype(np.float32),
  }


def _muted(rng: np.random.Generator, n: int, sat: tuple[float, float],
           val: tuple[float, float]) -> np.ndarray:
  """Random colours of low saturation: [n, 3] float32 in [0, 255]."""
  h = rng.uniform(0, 1, n)
  s = rng.uniform(*sat, n)
  v = rng.uniform(*val, n)
  k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6
  rgb = v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)
  return (255 * rgb).astype(np.float32)


class _Geometry:
  """Pixel grids of n images holding one shape each, with its signed distance.

  Attributes:
    pixel_x, pixel_y: [1, 1, S] and [1, S, 1] pixel-centre coordinates, in
      pixels (x to the right, y down).
    local_x, local_y: [n, S, S] coordinates in the shape frame (rotated,
      divided by the radius, y pointing up); the shape fits the unit disk.
    distance_px: [n, S, S] signed distance to the shape edge in pixels,
      negative inside.
    radius_px: [n] shape radius in pixels.
  """

  def __init__(self, shape: str, size: int, centre: np.ndarray, radius: np.ndarray,
               angle: np.ndarray):
    self._args = (shape, size, centre, radius, angle)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    self.norm_x, self.norm_y = grid[None, None, :], grid[None, :, None]
    self.pixel_x, self.pixel_y = self.norm_x * size, self.norm_y * size
    u = self.norm_x - centre[:, 0, None, None]
    v = centre[:, 1, None, None] - self.norm_y  # up is positive
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    r = radius[:, None, None]
    self.local_x = (cos * u + sin * v) / r
    self.local_y = (cos * v - sin * u) / r
    self.radius_px = radius * size
    self.distance_px = shape_distance(shape, self.local_x, self.local_y) * (r * size)

  def project(self, direction: np.ndarray) -> np.ndarray:
    """[n, S, S] image coordinate along per-image `direction` [n] (radians)."""
    d = direction[:, None, None]
    return (self.norm_x - 0.5) * np.cos(d) + (self.norm_y - 0.5) * np.sin(d)

  def shifted(self, dx: float, dy: float) -> _Geometry:
    """The same shapes moved by (dx, dy) image sides (y pointing down)."""
    shape, size, centre, radius, angle = self._args
    return _Geometry(shape, size, centre + np.float32([dx, dy]), radius, angle)


def shape_distance(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Signed distance to `shape` in its unit frame (negative inside).

  Args:
    shape: a name from SHAPES.
    x, y: broadcastable arrays of coordinates, y pointing up.

  Returns:
    The distance, broadcast shape of x and y; exact outside each shape.
  """
  if shape == "circle":
    return np.hypot(x, y) - 0.95
  if shape == "square":
    return _box(x, y, 0.75, 0.75)
  if shape == "cross":
    return np.minimum(_box(x, y, 0.95, 0.3), _box(x, y, 0.3, 0.95))
  if shape == "crescent":
    return np.maximum(np.hypot(x, y) - 0.95, 0.78 - np.hypot(x - 0.4, y - 0.2))
  if shape == "heart":
    scale = 1.65  # the unit heart below is 1.2 wide and 1.1 tall
    return _heart(x / scale, y / scale + 0.55) * scale
  return _polygon(x, y, _POLYGONS[shape])


def _regular(count: int, radii: Sequence[float]) -> np.ndarray:
  """Vertices of a star/regular polygon, first vertex at the top."""
  angles = np.pi / 2 + 2 * np.pi * np.arange(count * len(radii)) / (count * len(radii))
  r = np.resize(np.asarray(radii, np.float32), angles.shape)
  return np.stack([r * np.cos(angles), r * np.sin(angles)], -1).astype(np.float32)


_POLYGONS = {
    "triangle": _regular(3, [1.0]),
    "star": _regular(5, [1.0, 0.45]),
    "diamond": np.float32([[0, 1], [-0.62, 0], [0, -1], [0.62, 0]]),
}


def _box(x, y, half_w, half_h):
  qx, qy = np.abs(x) - half_w, np.abs(y) - half_h
  outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
  return outside + np.minimum(np.maximum(qx, qy), 0)


def _heart(x, y):
  """Signed distance to a heart with its tip at the origin (after I. Quilez)."""
  x = np.abs(x)
  lobe = np.hypot(x - 0.25, y - 0.75) - np.sqrt(2) / 4
  t = 0.5 * np.maximum(x + y, 0)
  body = np.sqrt(np.minimum(x * x + (y - 1) ** 2, (x - t) ** 2 + (y - t) ** 2))
  return np.where(x + y > 1, lobe, body * np.sign(x - y))


def _polygon(x, y, vertices):
  """Signed distance to a simple polygon (after I. Quilez), vectorised."""
  x, y = np.broadcast_arrays(x, y)
  dist2 = np.full(x.shape, np.inf, np.float32)
  inside = np.zeros(x.shape, bool)
  for (ax, ay), (bx, by) in zip(vertices, np.roll(vertices, -1, axis=0)):
    ex, ey, wx, wy = bx - ax, by - ay, x - ax, y - ay
    t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
    dist2 = np.minimum(dist2, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
    crosses = (y >= ay) != (y >= by)
    inside ^= crosses & ((ex * wy > ey * wx) == (by > ay))
  return np.sqrt(dist2) * np.where(inside, -1, 1)


def _coverage(d: np.ndarray) -> np.ndarray:
  """Fraction of a pixel covered by the region {d < 0}; d in pixels."""
  return np.clip(0.5 - d, 0.0, 1.0)


def _shape_alpha(geom: _Geometry, solid: np.ndarray, blur: float = 1.0) -> np.ndarray:
  """[n, S, S] opacity of the shape: the whole interior, or an inner band.

  `blur` > 1 widens the anti-aliased edge to about `blur` pixels.
  """
  d = geom.distance_px
  width = np.maximum(2.0, 0.12 * geom.radius_px)[:, None, None]
  band = _coverage((np.abs(d + width / 2) - width / 2) / blur)
  return np.where(solid[:, None, None], _coverage(d / blur), band)


def _surface(geom: _Geometry, rgb: np.ndarray, texture: np.ndarray) -> np.ndarray:
  """[n, S, S, 3] colour of the shape surface with its texture applied."""
  x, y = geom.local_x, geom.local_y
  stripes = 1 - 0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * 1.2 * (x + y)))
  dots = 1 - 0.35 * np.clip(3 * (np.cos(2.5 * np.pi * x) * np.cos(2.5 * np.pi * y) - 0.3), 0, 1)
  factor = np.select([texture[:, None, None] == 1, texture[:, None, None] == 2],
                     [stripes, dots], 1.0)
  return rgb[:, None, None, :] * factor[..., None]


def _over(dst: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  """Paints `colour` ([n,S,S,3] or [n,3]) over `dst` with [n,S,S] `alpha`."""
  if colour.ndim == 2:
    colour = colour[:, None, None, :]
  a = alpha[..., None]
  return dst * (1 - a) + colour * a


# Domain renderers: (rng, geometry of n images, [n, 3] class colours, [n] solid
# flags, [n] texture ids, style from _draw_domain_style) -> [n, S, S, 3] float
# image in about [0, 255].


def _render_photo(rng, geom, rgb, solid, texture, style):
  del rng  # the photo domain has no pixel noise
  t = np.clip(0.5 + geom.project(style["direction"]), 0, 1)[..., None]
  image = style["c1"][:, None, None] * (1 - t) + style["c2"][:, None, None] * t
  shadow_alpha = 0.35 * _shape_alpha(geom.shifted(0.03, 0.04), solid, blur=2.5)
  image = _over(image, np.zeros_like(rgb), shadow_alpha)
  light = style["light"][:, None, None]
  shading = 1 + 0.25 * np.clip(
      geom.local_x * np.cos(light) + geom.local_y * np.sin(light), -1.2, 1.2)
  surface = _surface(geom, rgb, texture) * shading[..., None]
  return _over(image, surface, _shape_alpha(geom, solid))


def _render_sketch(rng, geom, rgb, solid, texture, style):
  del texture  # a sketch shows outlines and hatching, not surface texture
  n, s = geom.distance_px.shape[:2]
  paper = _PAPER + style["tint"]
  grain = rng.normal(0, 4, (n, s, s, 1)).astype(np.float32)
  image = paper[:, None, None, :] + grain
  d = geom.distance_px
  ink_width = max(1.0, s / 40)
  stroke = np.maximum(1.5, 0.1 * geom.radius_px)[:, None, None]
  stroke_alpha = _coverage(np.abs(d + ink_width / 2 + stroke / 2) - stroke / 2)
  # Diagonal hatching, one line every `period` pixels, inside solid shapes.
  period = max(3.0, s / 10)
  diag = (geom.pixel_x + geom.pixel_y) / np.sqrt(2)
  hatch = _coverage(np.abs(diag % period - period / 2) - max(0.5, s / 128))
  hatch_alpha = 0.6 * hatch * _coverage(d) * solid[:, None, None]
  image = _over(image, rgb, hatch_alpha)
  image = _over(image, rgb, stroke_alpha)
  return _over(image, _INK[None], 0.9 * _coverage(np.abs(d) - ink_width / 2))


def _render_noisy(rng, geom, rgb, solid, texture, style):
  n, s = geom.distance_px.shape[:2]
  image = np.broadcast_to(style["bg"][:, None, None, :], (n, s, s, 3))
  image = _over(image, _surface(geom, rgb, texture), _shape_alpha(geom, solid))
  noise = rng.standard_normal((n, s, s, 3), dtype=np.float32)
  return image + noise * style["sigma"][:, None, None, None]


def _render_pattern(rng, geom, rgb, solid, texture, style):
  del rng  # the pattern is drawn from the per-example style only
  s = geom.distance_px.shape[1]
  period = style["period"][:, None, None]
  a = geom.project(style["direction"]) / period
  b = geom.project(style["direction"] + np.pi / 2) / period
  wave = np.sin(np.pi * a) * np.where(style["checker"][:, None, None], np.sin(np.pi * b), 1.0)
  t = np.clip(0.5 + wave * period * s / np.pi, 0, 1)[..., None]  # ~1 px edges
  image = style["c1"][:, None, None] * (1 - t) + style["c2"][:, None, None] * t
  return _over(image, _surface(geom, rgb, texture), _shape_alpha(geom, solid))


def _render_falsecolour(rng, geom, rgb, solid, texture, style):
  photo = _render_photo(rng, geom, rgb, solid, texture, style)
  return photo[..., _FALSE_COLOUR_CHANNELS]


def _untinted(domain: str) -> str:
  """The base domain a tinted one is drawn from ("tinted_photo" -> "photo"); others as they are."""
  return domain.removeprefix("tinted_")


def tint_matrix(degrees: float = TINT_DEGREES) -> np.ndarray:
  """[3, 3] linear map of RGB that rotates the YIQ chroma plane by `degrees`, keeping Y (luma).

  Computed in float64 through LAPACK, so its last bits may differ between machines: the
  renderer uses `_TINT`, this matrix rounded to 6 decimals, to keep the bytes identical.
  """
  to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
  t = np.deg2rad(degrees)
  rotate = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
  return np.linalg.inv(to_yiq) @ rotate @ to_yiq


# tint_matrix(TINT_DEGREES) to 6 decimals (tests/test_data_shapes.py checks the two agree).
_TINT = np.array([[1.00798, 0.184892, -0.192873],
                  [-0.107545, 0.978372, 0.129173],
                  [0.532831, -0.373571, 0.840739]], np.float32)


def _tinted(render):
  """A renderer of the same scene through the tinted camera: clip to [0, 255], then the cast."""
  def render_tinted(rng, geom, rgb, solid, texture, style):
    image = np.clip(render(rng, geom, rgb, solid, texture, style), 0, 255)
    # Elementwise products and sums in a fixed order (not a BLAS matmul, whose kernels and
    # rounding vary by CPU): float32 IEEE arithmetic, the same bytes on every machine.
    channels = [image[..., j] for j in range(3)]
    return np.stack([(channels[0] * _TINT[i, 0] + channels[1] * _TINT[i, 1])
                     + channels[2] * _TINT[i, 2] for i in range(3)], axis=-1)
  return render_tinted


_DOMAIN_RENDERERS = {
    "photo": _render_photo,
    "sketch": _render_sketch,
    "noisy": _render_noisy,
    "pattern": _render_pattern,
    "falsecolour": _render_falsecolour,
}
_DOMAIN_RENDERERS.update({
    f"tinted_{base}": _tinted(_DOMAIN_RENDERERS[base]) for base in ("photo", "sketch", "noisy", "pattern")})

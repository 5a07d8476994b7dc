"""Face-parsing label maps with 7 regions (skin, brows, eyes, nose, upper lip, lower lip, mouth interior).

* Image side: :func:`parse_image` (landmark polygons + a robust skin-colour model; an optional parsing
  network from :func:`load_parsing_network`, or a parsing map made elsewhere: :func:`load_parsing_map`).
* Model side: :func:`vertex_labels`, :func:`uv_label_map` (derived from any model's 68 landmark vertices).

Region definitions are data: ``assets/regions.json``.
"""

from redafit.parsing.image import ParsingResult, colorize, parse_image  # noqa: F401
from redafit.parsing.maps import load_parsing_map, save_parsing_map  # noqa: F401
from redafit.parsing.model_labels import (  # noqa: F401
    uv_label_map,
    vertex_face_area,
    vertex_labels,
    vertex_region_index,
)
from redafit.parsing.network import ParsingNetwork, load_parsing_network  # noqa: F401
from redafit.parsing.regions import (  # noqa: F401
    N_REGIONS,
    REGION_NAMES,
    load_region_spec,
    region_polygons,
)

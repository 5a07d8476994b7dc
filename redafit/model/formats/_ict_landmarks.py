"""Landmark vertex ids of the ICT Face Model (0-based), as published in the ICT-FaceKit README (MIT licence).

Pure data, used by the converter from the upstream OBJ layout (the face-area npz carries the same arrays).
Sides are the subject's: "right" = image left = model -x, for iBUG points 0-7; "left" for points 9-16.
"""

# Multi-PIE / iBUG 68-point markup (also ``idx_to_landmark_verts`` in vertex_indices.json).
MULTIPIE68 = (
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443, 268, 493,
    1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147, 4269, 3360, 1507,
    1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695, 2081, 0, 4275, 6200, 6213, 6346,
    6461, 5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517, 5966,
)
# Substitutes for markup points 0-7 (right, from the ear down to the chin) and 9-16 (left, chin up to the ear).
JAWLINE_RIGHT = (1278, 1272, 12, 1834, 243, 781, 2199, 1447)
JAWLINE_LEFT = (3661, 4390, 3022, 2484, 4036, 2253, 3490, 3496)
# Candidate vertices along each side of the jaw (supersets of the above, same ordering).
JAWLINE_RIGHT_EXTENDED = (1280, 1278, 1275, 1272, 1248, 12, 820, 1834, 1902, 243, 844, 781, 1673, 2199, 801, 1447,
                          800)
JAWLINE_LEFT_EXTENDED = (3041, 3661, 3042, 4390, 3880, 3022, 3085, 2484, 4102, 4036, 3061, 2253, 3466, 3490, 3493,
                         3496, 3498)

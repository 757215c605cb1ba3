"""What the embedded tiny CLIP was pretrained on, and what was kept out of it.

`scripts/pretrain_tiny_clip.py` reads this description; evaluations read it to
tell seen from held-out data. Keeping a domain out of pretraining leaves room
for prompts to help, as real CLIP is weak on EuroSAT or DTD.
"""

SHAPES_PRETRAIN_DOMAINS = ("photo", "sketch", "noisy")
SHAPES_HELDOUT_DOMAINS = ("pattern",)
IMAGE_SIZE = 32
CONTEXT_LENGTH = 32

# Caption templates per domain used in pretraining. Every pool contains the
# generic ones, so ZEROSHOT_TEMPLATES are in-distribution for each domain.
GENERIC_TEMPLATES = ("a {}.", "an image of a {}.", "a picture of a {}.")
DOMAIN_TEMPLATES = {
    "photo": ("a photo of a {}.", "a bright photo of a {}.", "a photo of a {} on a background."),
    "sketch": ("a sketch of a {}.", "a drawing of a {}.", "an outline drawing of a {}."),
    "noisy": ("a noisy photo of a {}.", "a grainy picture of a {}.", "a blurry photo of a {}."),
    "pattern": ("a {} on a patterned background.", "a photo of a {} on stripes."),
    "digits": ("a handwritten digit {}.", "the number {}.", "a scan of the digit {}."),
}
ZEROSHOT_TEMPLATES = GENERIC_TEMPLATES

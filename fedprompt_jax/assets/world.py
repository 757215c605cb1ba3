"""What the embedded tiny CLIP was pretrained on, and what was kept out of it.

`scripts/pretrain_tiny_clip.py` reads this description; evaluations read it to
tell seen from held-out data. Two shapes domains are kept out of pretraining:
`pattern` (busy backgrounds; zero-shot about 50%, few-shot prompts add little)
and `falsecolour` (photos with red and green swapped: most colour names are
wrong, so zero-shot is about 16%, yet 16-shot deep visual prompts reach about
60%). The second is the room prompts need, as real CLIP is weak on EuroSAT and
prompt tuning helps there. A held-out domain can be added without retraining as long
as the pretraining domains and DOMAIN_TEMPLATES (which feed the BPE vocabulary)
stay as they are.

World v2 (issue 14) adds four tinted domains (`shapes.TINTED_DOMAINS`: the photo, sketch,
noisy and pattern domains through one fixed colour cast) without retraining, none seen in
pretraining. The cast leaves zero-shot between 25% and 65% on the three federated ones
and one prompt trained on the three gains on each (`python launch/reproduce.py
--table=headroom`); `tinted_pattern` stays unseen by pretraining and by the federated
defaults, for cross-domain claims.
"""

SHAPES_PRETRAIN_DOMAINS = ("photo", "sketch", "noisy")
SHAPES_HELDOUT_DOMAINS = ("pattern", "falsecolour")  # as recorded by the build (pretraining.json)
# World v2: the domains the default federation (configs/pep.py) trains on, with room on each,
# and the one kept out of everything.
FEDERATED_DOMAINS = ("tinted_photo", "tinted_sketch", "tinted_noisy")
UNSEEN_DOMAIN = "tinted_pattern"
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

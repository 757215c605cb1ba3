"""Installs fedprompt_jax: federated prompt tuning of CLIP in JAX/Flax."""

import setuptools

CORE = [
    "jax>=0.10,<0.11",
    "flax>=0.12,<0.13",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12",
    "ml-collections>=1.0",
    "numpy>=2.0",
    "safetensors>=0.4",
    "transformers>=5.0,<6",
    "tokenizers>=0.21",
    "huggingface-hub>=1.0",
    "absl-py>=2.0",
    "scikit-learn>=1.5",
    "pillow>=10.0",
    "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow
    "tqdm>=4.60",
    "matplotlib>=3.5",
    # Reading prepared tfds data sets works without TensorFlow (ArrayRecord); preparing one
    # needs tensorflow-cpu once (the error for an unprepared set prints the command).
    "tensorflow-datasets>=4.9.10",
    "array-record>=0.8",
    "dp-accounting>=0.6",  # the privacy accountant of client-level DP (fedprompt_jax/privacy)
]

EXTRAS = {
    # Kept for old install commands: tensorflow-datasets is now a core dependency.
    "tfds": [],
    # torch is only for the parity fixtures, the live reference tests and benchmarks/vs_pytorch.py.
    "torch": ["torch==2.13.0"],
}
# IBM's adversarial-robustness-toolbox is the established PGD/AutoPGD the attack tests compare with.
EXTRAS["test"] = ["pytest>=8.0", "pytest-xdist>=3.5", "chex>=0.1.90",
                   "adversarial-robustness-toolbox>=1.20"]

setuptools.setup(
    name="fedprompt_jax",
    version="0.1.0",
    description="Federated (adversarial) prompt tuning of CLIP in JAX/Flax.",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["fedprompt_jax", "fedprompt_jax.*"]),
    package_data={"fedprompt_jax": ["assets/**/*"]},
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
)

"""The model-card strings (FACTS.md), as raw user input: queries without their prompt."""

CARD_QUERIES = ["What is the capital of China?", "Explain gravity"]
CARD_DOCS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. It gives weight to physical "
    "objects and is responsible for the movement of planets around the sun.",
]

"""Hugging Face repositories on the host: the local cache (cache), and what a repository's JSON
files say (repo). Nothing here imports transformers or reads a weight: bounded JSON only."""

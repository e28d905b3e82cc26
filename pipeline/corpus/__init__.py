"""Manifests, the synthetic TTS corpus, real-speech corpora and audio views."""

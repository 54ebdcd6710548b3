"""The tagger: layers, heads, the CRF, the model directory."""

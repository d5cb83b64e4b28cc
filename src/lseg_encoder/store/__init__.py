"""Where artefacts live and how they are written: atomic writes, the one artefact cache, and the
fingerprints that key it. Nothing here knows what an encoder is."""

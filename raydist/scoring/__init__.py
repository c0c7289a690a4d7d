"""Score producers: PatchCore (memory bank + coreset), and the pieces they are built from."""

"""Attack generation for evaluation: rendered flash reflections and synthetic presentation
attacks made from still photos and real videos (``facegate attack``)."""

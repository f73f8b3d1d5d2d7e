"""Whole numbers in one image (``predict --numbers``): the field's ink cleaned as a whole
(:mod:`.field`), cut into candidate digits (:mod:`.segment`), each candidate read by the
digit model, and the best reading chosen (:mod:`.reader`)."""

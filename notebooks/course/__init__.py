"""What the chapters share, kept beside them and out of the library: ``measure`` (the published
numbers, the runs a chapter finds, every model scored over the test sets, the texture measure)
and ``figures`` (training curves, zoomed image grids). Each is used by more than one notebook;
what a single chapter teaches is written in that chapter's cells instead."""

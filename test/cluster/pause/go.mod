module edgeshift.dev/pause

go 1.26

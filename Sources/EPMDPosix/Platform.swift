#if !os(Linux)
#error("epmd-gateway runs on Linux only: its loop is epoll and its descriptors are Linux's.")
#endif

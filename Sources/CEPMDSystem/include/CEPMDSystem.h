#ifndef CEPMDSYSTEM_H
#define CEPMDSYSTEM_H
#include <sys/epoll.h>
#endif

#ifndef CMICROHTTPD_SHIM_H
#define CMICROHTTPD_SHIM_H

// libmicrohttpd for Swift. Swift cannot call C variadic functions, so each variadic call the
// gateway needs gets one fixed-signature wrapper here. Nothing else belongs in this file.

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <microhttpd.h>

/// An unescape callback that leaves URLs and query arguments as they came: libmicrohttpd would
/// otherwise decode `%2F` into a path separator and `%00` into a terminator before routing. The
/// gateway percent-decodes each path segment and argument itself (and refuses `/` and NUL in names).
static inline size_t cmhd_keep_escaped(void *cls, struct MHD_Connection *connection, char *text) {
    (void)cls;
    (void)connection;
    size_t length = 0;
    while (text[length] != '\0') {
        length++;
    }
    return length;
}

/// MHD_start_daemon (variadic) with the options Swift builds as an array (`MicroHTTPDOptions`), plus
/// the one every daemon of the gateway gets: the unescape callback above. `options` ends with
/// MHD_OPTION_END. `accept_policy` (may be NULL) sees each peer address before libmicrohttpd accepts.
static inline struct MHD_Daemon *cmhd_start(unsigned int flags,
                                            uint16_t port,
                                            MHD_AcceptPolicyCallback accept_policy,
                                            void *accept_policy_cls,
                                            MHD_AccessHandlerCallback handler,
                                            void *handler_cls,
                                            const struct MHD_OptionItem *options) {
    return MHD_start_daemon(flags,
                            port,
                            accept_policy,
                            accept_policy_cls,
                            handler,
                            handler_cls,
                            MHD_OPTION_ARRAY,
                            options,
                            MHD_OPTION_UNESCAPE_CALLBACK,
                            cmhd_keep_escaped,
                            NULL,
                            MHD_OPTION_END);
}

/// MHD_get_daemon_info (variadic): the port the daemon is bound to (0 if unknown).
static inline uint16_t cmhd_bound_port(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info != NULL ? info->port : 0;
}

/// MHD_get_daemon_info (variadic): the listening socket (-1 if none), for a hand-over to pass on.
static inline int cmhd_listen_fd(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_LISTEN_FD);
    return info != NULL ? (int)info->listen_fd : -1;
}

/// MHD_get_connection_info (variadic): the connection's socket (-1 if unknown). The event streams
/// poll the sockets of suspended connections for a peer that hung up, which libmicrohttpd does not
/// watch while a connection is suspended.
static inline int cmhd_connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info != NULL ? info->connect_fd : -1;
}

#endif

#ifndef CMICROHTTPD_TLS_H
#define CMICROHTTPD_TLS_H

// GnuTLS for the HTTPS front: libmicrohttpd does the handshake, but it only REQUESTS a client
// certificate (MHD_OPTION_HTTPS_MEM_TRUST); checking it is the application's job. These wrappers
// exist because MHD_get_connection_info is variadic and because gnutls_datum_t and the credentials
// handle are easier to drive from C. Nothing else belongs in this file.

#include <stddef.h>
#include <string.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

/// The outcome of checking a connection's client certificate.
enum cmhd_peer_verdict {
    /// Signed by the trusted CA, in its validity period.
    CMHD_PEER_TRUSTED = 0,
    /// The connection is not TLS (no session).
    CMHD_PEER_NO_SESSION = 1,
    /// The client sent no certificate.
    CMHD_PEER_NO_CERTIFICATE = 2,
    /// The client sent a certificate the trust list does not accept (other CA, expired, ...).
    CMHD_PEER_UNTRUSTED = 3,
    /// GnuTLS could not check (an error code other than "no certificate").
    CMHD_PEER_ERROR = 4,
};

/// Checks the connection's client certificate against the trust list libmicrohttpd loaded from
/// MHD_OPTION_HTTPS_MEM_TRUST (the daemon's credentials, which the session uses).
static inline enum cmhd_peer_verdict cmhd_verify_peer(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == NULL || info->tls_session == NULL) {
        return CMHD_PEER_NO_SESSION;
    }
    gnutls_session_t session = (gnutls_session_t)info->tls_session;
    if (gnutls_certificate_type_get(session) != GNUTLS_CRT_X509) {
        return CMHD_PEER_NO_CERTIFICATE;
    }
    unsigned int count = 0;
    if (gnutls_certificate_get_peers(session, &count) == NULL || count == 0) {
        return CMHD_PEER_NO_CERTIFICATE;
    }
    unsigned int status = 0;
    int result = gnutls_certificate_verify_peers2(session, &status);
    if (result == GNUTLS_E_NO_CERTIFICATE_FOUND) {
        return CMHD_PEER_NO_CERTIFICATE;
    }
    if (result < 0) {
        return CMHD_PEER_ERROR;
    }
    return status == 0 ? CMHD_PEER_TRUSTED : CMHD_PEER_UNTRUSTED;
}

/// Checks, before the daemon starts, that `certificate` (PEM, NUL-terminated) and `key` (PEM) load
/// and belong together, as libmicrohttpd will load them. Returns 0, or a GnuTLS error code (negative)
/// for `cmhd_tls_error`. GNUTLS_E_CERTIFICATE_KEY_MISMATCH: they do not match.
static inline int cmhd_check_key_pair(const char *certificate, const char *key) {
    gnutls_certificate_credentials_t credentials;
    int result = gnutls_certificate_allocate_credentials(&credentials);
    if (result < 0) {
        return result;
    }
    gnutls_datum_t cert = {(unsigned char *)certificate, (unsigned int)strlen(certificate)};
    gnutls_datum_t secret = {(unsigned char *)key, (unsigned int)strlen(key)};
    result = gnutls_certificate_set_x509_key_mem(credentials, &cert, &secret, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(credentials);
    return result < 0 ? result : 0;
}

/// Checks that `authorities` (PEM, NUL-terminated) holds at least one CA certificate. Returns the
/// number of certificates (> 0), 0 when none parsed, or a GnuTLS error code (negative).
static inline int cmhd_check_trust(const char *authorities) {
    gnutls_certificate_credentials_t credentials;
    int result = gnutls_certificate_allocate_credentials(&credentials);
    if (result < 0) {
        return result;
    }
    gnutls_datum_t data = {(unsigned char *)authorities, (unsigned int)strlen(authorities)};
    result = gnutls_certificate_set_x509_trust_mem(credentials, &data, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(credentials);
    return result;
}

/// The text of a GnuTLS error code.
static inline const char *cmhd_tls_error(int code) {
    return gnutls_strerror(code);
}

/// The value libmicrohttpd's flags need for TLS (MHD_USE_TLS), and whether the linked library
/// was built with it.
static inline int cmhd_tls_supported(void) {
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

#endif

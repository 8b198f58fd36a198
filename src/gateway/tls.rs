//! TLS failures that no retry can mend.
//!
//! A certificate the client does not trust (a proxy or antivirus intercepting TLS, a
//! `base_url` pointing at the wrong host, a clock far off) fails the same way on every try;
//! retrying only makes the user wait three times for the same error. Everything else that
//! fails before the answer (resets, refused connections, timeouts) may pass on the next try.

/// The certificate problem in `err`'s chain of causes, if that is why it failed.
pub(crate) fn certificate_refused(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)
            )
            .then(|| tls.to_string());
        }
        // An I/O error's `source()` skips the error it wraps (hyper-rustls wraps rustls's
        // error in one), so look inside it.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(found) = certificate_refused(inner) {
                return Some(found);
            }
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_certificate_error_wrapped_in_io() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(tls);
        let found = certificate_refused(&io).expect("found inside the io::Error");
        assert!(found.contains("UnknownIssuer"), "{found}");
        let corrupt = std::io::Error::other(rustls::Error::DecryptError);
        assert_eq!(certificate_refused(&corrupt), None);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(certificate_refused(&reset), None);
    }
}

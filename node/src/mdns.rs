//! mDNS browsing for routers (filled in below).

package main

// The container image is FROM scratch and has no /etc/ssl: embed Mozilla's roots, used only when the system has none.
import _ "golang.org/x/crypto/x509roots/fallback"

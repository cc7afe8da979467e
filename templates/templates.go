// Package templates embeds stepgate's pages and their stylesheet. Handlers
// take an fs.FS so operators can override the pages; this is the default.
package templates

import "embed"

// FS holds every page (*.html), style.css and passkey.js, the one script
// (the passkey pages need navigator.credentials; every other page works
// without JavaScript).
//
//go:embed *.html *.css *.js
var FS embed.FS

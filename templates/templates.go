// Package templates embeds stepgate's pages and their stylesheet. Handlers
// take an fs.FS so operators can override the pages; this is the default.
package templates

import "embed"

// FS holds every page (*.html) and style.css.
//
//go:embed *.html *.css
var FS embed.FS

package templates

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Pages is the set of web pages, each parsed once together with page/layout.html.
type Pages struct {
	sets map[string]*template.Template
}

// View is what every page template receives: the page's language, its title and its own data.
type View struct {
	Lang        string
	Title       string
	Publication string // the publication's name, shown in every page's header
	Data        any
}

// Funcs are the helpers every template may call. They take the language explicitly, so nothing is
// bound per request and one parsed set serves every request at once.
func Funcs(c *Catalog) template.FuncMap {
	return template.FuncMap{
		"t": c.T,
		"n": c.N,
	}
}

// ParsePages parses page/layout.html with each other page/*.html; a page named "x.html" renders as "x".
func ParsePages(fsys fs.FS, c *Catalog) (*Pages, error) {
	layout, err := fs.ReadFile(fsys, "page/layout.html")
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	names, err := fs.Glob(fsys, "page/*.html")
	if err != nil {
		return nil, err
	}
	p := &Pages{sets: map[string]*template.Template{}}
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".html")
		if base == "layout" {
			continue
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		t, err := template.New("layout").Funcs(Funcs(c)).Parse(string(layout))
		if err == nil {
			_, err = t.New(base).Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("templates: %s: %w", name, err)
		}
		p.sets[base] = t
	}
	return p, nil
}

// Page renders page name in full: a template error leaves no half page to send.
func (p *Pages) Page(name string, v View) ([]byte, error) {
	t, ok := p.sets[name]
	if !ok {
		return nil, fmt.Errorf("templates: no page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return nil, fmt.Errorf("templates: page %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// Render writes page name into w, rendered in full first (Page).
func (p *Pages) Render(w io.Writer, name string, v View) error {
	page, err := p.Page(name, v)
	if err != nil {
		return err
	}
	_, err = w.Write(page)
	return err
}

// Has reports whether a page named name exists.
func (p *Pages) Has(name string) bool { _, ok := p.sets[name]; return ok }

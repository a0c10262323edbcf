// Package templates holds the page and email templates and the translations, embedded in the binary
// and overridable file by file from a directory, parsed once at start.
package templates

import (
	"embed"
	"errors"
	"io/fs"
	"os"
	"path"
)

//go:embed email page i18n
var embedded embed.FS

// FS returns the embedded files, with any file that exists under dir (same relative path) taking
// the embedded one's place. An empty dir means the embedded files only.
func FS(dir string) fs.FS {
	if dir == "" {
		return embedded
	}
	return overlay{top: os.DirFS(dir), base: embedded}
}

type overlay struct{ top, base fs.FS }

func (o overlay) Open(name string) (fs.File, error) {
	f, err := o.top.Open(name)
	if err == nil {
		if st, statErr := f.Stat(); statErr == nil && !st.IsDir() {
			return f, nil
		}
		f.Close()
	}
	return o.base.Open(name)
}

// ReadDir lists the embedded entries plus any extra files of the override directory.
func (o overlay) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(o.base, name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Name()] = true
	}
	extra, _ := fs.ReadDir(o.top, name)
	for _, e := range extra {
		if !seen[e.Name()] && !e.IsDir() && path.Ext(e.Name()) != "" {
			entries = append(entries, e)
		}
	}
	if len(entries) == 0 && err != nil {
		return nil, err
	}
	return entries, nil
}

package templates

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Catalog holds the translated strings of every language. Files are i18n/LANG.json and
// i18n/AREA.LANG.json (one per package, so areas do not collide); keys are flat strings.
// A plural key holds an object of CLDR forms ("one", "few", "many", "other").
type Catalog struct {
	msgs    map[string]map[string]string
	plurals map[string]map[string]map[string]string
}

// LoadCatalog reads every i18n/*.json file of fsys.
func LoadCatalog(fsys fs.FS) (*Catalog, error) {
	c := &Catalog{msgs: map[string]map[string]string{}, plurals: map[string]map[string]map[string]string{}}
	names, err := fs.Glob(fsys, "i18n/*.json")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".json")
		lang := base[strings.LastIndex(base, ".")+1:]
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if c.msgs[lang] == nil {
			c.msgs[lang] = map[string]string{}
			c.plurals[lang] = map[string]map[string]string{}
		}
		for k, v := range raw {
			var s string
			if json.Unmarshal(v, &s) == nil {
				c.msgs[lang][k] = s
				continue
			}
			var forms map[string]string
			if err := json.Unmarshal(v, &forms); err != nil {
				return nil, fmt.Errorf("%s: key %q: want a string or an object of plural forms", name, k)
			}
			c.plurals[lang][k] = forms
		}
	}
	return c, nil
}

// Has reports whether lang has any translations.
func (c *Catalog) Has(lang string) bool { return len(c.msgs[lang]) > 0 || len(c.plurals[lang]) > 0 }

// T returns the string for key in lang (falling back to English, then the key itself), formatted
// with args when any are given.
func (c *Catalog) T(lang, key string, args ...any) string {
	s, ok := c.msgs[lang][key]
	if !ok {
		s, ok = c.msgs["en"][key]
	}
	if !ok {
		return key
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

// N returns the plural form of key for n in lang, with n formatted into it (%d).
func (c *Catalog) N(lang, key string, n int) string {
	forms, ok := c.plurals[lang][key]
	if !ok {
		forms, ok = c.plurals["en"][key]
		lang = "en"
	}
	if !ok {
		return fmt.Sprintf("%s %d", key, n)
	}
	s, ok := forms[PluralForm(lang, n)]
	if !ok {
		s = forms["other"]
	}
	if strings.Contains(s, "%d") {
		return fmt.Sprintf(s, n)
	}
	return s
}

// PluralForm gives the CLDR cardinal plural category of the integer n in lang.
func PluralForm(lang string, n int) string {
	if n < 0 {
		n = -n
	}
	switch lang {
	case "ru", "uk", "be":
		mod10, mod100 := n%10, n%100
		switch {
		case mod10 == 1 && mod100 != 11:
			return "one"
		case mod10 >= 2 && mod10 <= 4 && (mod100 < 12 || mod100 > 14):
			return "few"
		default:
			return "many"
		}
	default:
		if n == 1 {
			return "one"
		}
		return "other"
	}
}

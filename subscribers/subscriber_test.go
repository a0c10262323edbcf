package subscribers

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeEmail(t *testing.T) {
	tests := []struct {
		name, in, want string
		key            string // expected FieldError key when want is ""
	}{
		{"plain", "reader@example.com", "reader@example.com", ""},
		{"trimmed, domain lower-cased, local case kept", "  John.Smith@Example.COM\t", "John.Smith@example.com", ""},
		{"plus tag", "a+news@example.co.uk", "a+news@example.co.uk", ""},
		{"atext symbols", "o'neil_{x}=1@example.com", "o'neil_{x}=1@example.com", ""},
		{"IDN domain kept in Unicode, lower-cased", "ivan@ПРИМЕР.РФ", "ivan@пример.рф", ""},
		{"Unicode local part", "иван@example.com", "иван@example.com", ""},
		{"NFD composed to NFC", "jose\u0301@example.com", "jos\u00e9@example.com", ""},
		{"punycode domain", "a@xn--e1afmkfd.xn--p1ai", "a@xn--e1afmkfd.xn--p1ai", ""},
		{"empty", "", "", KeyEmailRequired},
		{"blank", " \t ", "", KeyEmailRequired},
		{"no at", "example.com", "", KeyEmailInvalid},
		{"two ats", "a@b@example.com", "", KeyEmailInvalid},
		{"no domain dot", "a@localhost", "", KeyEmailInvalid},
		{"empty local", "@example.com", "", KeyEmailInvalid},
		{"leading dot", ".a@example.com", "", KeyEmailInvalid},
		{"double dot", "a..b@example.com", "", KeyEmailInvalid},
		{"space inside", "a b@example.com", "", KeyEmailInvalid},
		{"display name form", "Bob <bob@example.com>", "", KeyEmailInvalid},
		{"quoted local", `"a b"@example.com`, "", KeyEmailInvalid},
		{"address literal", "a@[127.0.0.1]", "", KeyEmailInvalid},
		{"numeric tld", "a@1.2.3.4", "", KeyEmailInvalid},
		{"hyphen label", "a@-example.com", "", KeyEmailInvalid},
		{"underscore domain", "a@ex_ample.com", "", KeyEmailInvalid},
		{"CR", "a@example.com\r", "", KeyControl},
		{"LF inside", "a@exa\nmple.com", "", KeyControl},
		{"header injection", "a@example.com\r\nBcc: all@example.com", "", KeyControl},
		{"NUL", "a\x00@example.com", "", KeyControl},
		{"tab inside", "a\tb@example.com", "", KeyEmailInvalid},
		{"zero-width space", "a\u200b@example.com", "", KeyEmailInvalid},
		{"right-to-left override", "a\u202e@example.com", "", KeyEmailInvalid},
		{"invalid UTF-8", "a\xff@example.com", "", KeyEmailInvalid},
		{"local part over 64", strings.Repeat("a", 65) + "@example.com", "", KeyEmailInvalid},
		{"254 characters", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 57) + ".com", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 57) + ".com", ""},
		{"255 characters", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 58) + ".com", "", KeyEmailTooLong},
		{"huge", strings.Repeat("a", 100000) + "@example.com", "", KeyEmailTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeEmail(tc.in)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("NormalizeEmail(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "email" || fe.Key != tc.key || !errors.Is(err, ErrInvalid) {
				t.Fatalf("NormalizeEmail(%q) = %q, %v; want FieldError email/%s", tc.in, got, err, tc.key)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name, in, want string
		key            string
	}{
		{"empty", "", "", ""},
		{"trimmed", "  Ann Lee  ", "Ann Lee", ""},
		{"Cyrillic", "Анна Каренина", "Анна Каренина", ""},
		{"emoji with joiner", "Sam 👩‍💻", "Sam 👩‍💻", ""},
		{"NFC", "Jose\u0301", "Jos\u00e9", ""},
		{"100 characters", strings.Repeat("я", 100), strings.Repeat("я", 100), ""},
		{"101 characters", strings.Repeat("я", 101), "", KeyNameTooLong},
		{"LF", "Eve\nBcc: x", "", KeyControl},
		{"CR", "Eve\r", "", KeyControl},
		{"NUL", "E\x00ve", "", KeyControl},
		{"tab", "E\tve", "", KeyNameInvalid},
		{"escape", "E\x1b[31mve", "", KeyNameInvalid},
		{"bidi override", "Eve\u202egnp.exe", "", KeyNameInvalid},
		{"invalid UTF-8", "E\xffve", "", KeyNameInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ValidateName(tc.in)
			if tc.key == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ValidateName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "name" || fe.Key != tc.key || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateName(%q) = %q, %v; want FieldError name/%s", tc.in, got, err, tc.key)
			}
		})
	}
}

// FuzzNormalizeEmail: whatever comes in, an accepted address is stable under normalisation, short
// enough, free of control characters, and valid UTF-8.
func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"reader@example.com", " A@B.CO ", "ivan@ПРИМЕР.РФ", "a\r\n@x.com", "a@@b.c", "\"q\"@x.com", "jose\u0301@example.com", "a@x.y-", "ǅ@ǅ.ǅ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeEmail(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if !utf8.ValidString(out) || utf8.RuneCountInString(out) > MaxEmailLen || strings.ContainsAny(out, "\r\n\x00 \t") {
			t.Fatalf("accepted %q", out)
		}
		if strings.Count(out, "@") != 1 {
			t.Fatalf("accepted %q with %d @", out, strings.Count(out, "@"))
		}
		again, err := NormalizeEmail(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		domain := out[strings.LastIndexByte(out, '@')+1:]
		if strings.ToLower(domain) != domain {
			t.Fatalf("domain of %q not lower-case", out)
		}
	})
}

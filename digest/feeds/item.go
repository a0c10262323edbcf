package feeds

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mmcdole/gofeed"
	ext "github.com/mmcdole/gofeed/extensions"

	"newsletter/digest"
	"newsletter/internal/textclean"
)

// feedItemArticle maps one feed item to an article; ok is false for an item with nothing to show.
// now stands in for a missing date. date is nil when the item has none (or one in the future), so
// that a re-poll keeps the first-seen time instead of moving it.
func feedItemArticle(item *gofeed.Item, base *url.URL, lang string, now time.Time) (a digest.Article, date *time.Time, ok bool) {
	a.Lang = lang
	a.Source = "feed"
	a.Title = textclean.PlainTitle(item.Title, textclean.TitleMaxRunes)
	link := item.Link
	if link == "" && len(item.Links) > 0 {
		link = item.Links[0]
	}
	a.Link = textclean.CanonicalLink(base, link)
	desc := item.Description
	if strings.TrimSpace(desc) == "" {
		desc = item.Content
	}
	a.Summary = textclean.Summarize(desc)
	if a.Title == "" {
		a.Title = textclean.CutAtWord(a.Summary, 100)
	}
	if a.Title == "" {
		return a, nil, false
	}
	a.Author = feedAuthor(item)
	for _, c := range item.Categories {
		if a.Section = textclean.PlainTitle(c, 100); a.Section != "" {
			break
		}
	}
	a.ImageURL, a.ImageAlt = feedImage(item, base)
	if a.ImageURL == "" {
		a.ImageAlt = ""
	} else if a.ImageAlt == "" {
		a.ImageAlt = a.Title
	}

	switch {
	case item.PublishedParsed != nil:
		date = item.PublishedParsed
	case item.UpdatedParsed != nil:
		date = item.UpdatedParsed
	}
	if date != nil && date.After(now.Add(10*time.Minute)) {
		date = nil // a date in the future would keep the item on top for ever
	}
	a.PublishedAt = now
	if date != nil {
		d := date.UTC()
		date = &d
		a.PublishedAt = d
	}

	a.GUID = textclean.FoldSpace(item.GUID)
	if a.GUID == "" {
		a.GUID = a.Link
	}
	if a.GUID == "" {
		stamp := ""
		if date != nil {
			stamp = date.Format(time.RFC3339)
		}
		a.GUID = hashGUID(a.Title + "\n" + stamp)
	}
	if len(a.GUID) > 500 {
		a.GUID = hashGUID(a.GUID) // a btree index entry must stay small
	}
	return a, date, true
}

// feedAuthor is the first author's name. gofeed reads "Name <email>" out of a creator and can come
// back empty on odd input, so the raw Dublin Core creator is the fallback.
func feedAuthor(item *gofeed.Item) string {
	var names []string
	for _, p := range item.Authors {
		if p != nil {
			names = append(names, p.Name)
		}
	}
	if item.Author != nil {
		names = append(names, item.Author.Name)
	}
	if dc := item.DublinCoreExt; dc != nil {
		names = append(names, dc.Creator...)
		names = append(names, dc.Author...)
	}
	for _, n := range names {
		if n = textclean.PlainTitle(n, 200); n != "" {
			return n
		}
	}
	return ""
}

func hashGUID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// feedImage picks the lead image: an image enclosure, else Media RSS content or thumbnail, else the
// item's own image. 1x1 images are tracking pixels and never chosen.
func feedImage(item *gofeed.Item, base *url.URL) (src, alt string) {
	for _, e := range item.Enclosures {
		if e != nil && strings.HasPrefix(strings.ToLower(e.Type), "image/") {
			if u := textclean.CanonicalLink(base, e.URL); u != "" {
				return u, ""
			}
		}
	}
	if media, ok := item.Extensions["media"]; ok {
		candidates := append([]ext.Extension{}, media["content"]...)
		for _, g := range media["group"] {
			candidates = append(candidates, g.Children["content"]...)
		}
		candidates = append(candidates, media["thumbnail"]...)
		rejected := map[string]bool{}
		defer func() {
			if rejected[src] {
				src, alt = "", "" // gofeed's own pick (item.Image) may be the pixel we skipped
			}
		}()
		for _, c := range candidates {
			medium, typ := c.Attrs["medium"], strings.ToLower(c.Attrs["type"])
			if c.Name == "content" && medium != "image" && !strings.HasPrefix(typ, "image/") {
				continue
			}
			if tinyImage(c.Attrs["width"]) || tinyImage(c.Attrs["height"]) {
				rejected[textclean.CanonicalLink(base, c.Attrs["url"])] = true
				continue
			}
			if u := textclean.CanonicalLink(base, c.Attrs["url"]); u != "" {
				for _, d := range c.Children["description"] {
					alt = textclean.PlainTitle(d.Value, 300)
				}
				return u, alt
			}
		}
	}
	if item.Image != nil {
		if u := textclean.CanonicalLink(base, item.Image.URL); u != "" {
			return u, textclean.PlainTitle(item.Image.Title, 300)
		}
	}
	return "", ""
}

func tinyImage(dim string) bool {
	n, err := strconv.Atoi(strings.TrimSpace(dim))
	return err == nil && n <= 1
}

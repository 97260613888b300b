// Operators' gallery: people, their photos and category, read with an admin API key that
// stays in this tab's session storage. Photos are fetched with the key and shown as blobs.
(function () {
    "use strict";
    var $ = function (id) { return document.getElementById(id); };
    var STORE = "lookalike:admin-key";
    var MAX_THUMBS = 6;

    function el(tag, cls, text) {
        var node = document.createElement(tag);
        if (cls) node.className = cls;
        if (text != null) node.textContent = text;
        return node;
    }

    function status(text) { $("gallery-status").textContent = text; }

    function authed(key, url) {
        return fetch(url, { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
    }

    function thumb(key, row, alt) {
        var img = el("img");
        img.alt = alt;
        img.width = 96;
        img.height = 96;
        authed(key, "/admin/gallery/photos/" + row).then(function (r) {
            if (!r.ok) throw new Error(String(r.status));
            return r.blob();
        }).then(function (blob) { img.src = URL.createObjectURL(blob); }, function () { img.alt = alt + " (could not load)"; });
        return img;
    }

    function render(key, people) {
        var box = $("people");
        box.replaceChildren();
        people.forEach(function (p) {
            var card = el("article", "person");
            card.appendChild(el("h2", null, p.name));
            card.appendChild(el("span", "cat " + p.category, p.category === "bad" ? "bad news" : "good news"));
            var thumbs = el("div", "thumbs");
            p.photos.slice(0, MAX_THUMBS).forEach(function (row, i) {
                thumbs.appendChild(thumb(key, row, p.name + ", photo " + (i + 1)));
            });
            card.appendChild(thumbs);
            var more = p.photos.length - MAX_THUMBS;
            card.appendChild(el("p", "note", p.photos.length + " photo" + (p.photos.length === 1 ? "" : "s") +
                                (more > 0 ? " (" + more + " not shown)" : "") + " · id " + p.id));
            box.appendChild(card);
        });
    }

    function load(key) {
        status("Loading…");
        authed(key, "/admin/gallery/people").then(function (r) {
            return r.json().catch(function () { return {}; }).then(function (data) {
                if (r.status === 401 || r.status === 403) {
                    sessionStorage.removeItem(STORE);
                    status((data.error && data.error.message) || "This key may not read the gallery.");
                    $("people").replaceChildren();
                    return;
                }
                if (!r.ok) { status("The server answered " + r.status + "."); return; }
                var good = data.people.filter(function (p) { return p.category === "good"; }).length;
                status(data.people.length + " people (" + good + " good news, " +
                       (data.people.length - good) + " bad news).");
                render(key, data.people);
            });
        }, function () { status("No connection to the server."); });
    }

    document.addEventListener("DOMContentLoaded", function () {
        $("key-form").addEventListener("submit", function (e) {
            e.preventDefault();
            var key = $("admin-key").value.trim();
            if (!key) { status("Enter an admin API key."); return; }
            sessionStorage.setItem(STORE, key);
            load(key);
        });
        var saved = sessionStorage.getItem(STORE);
        if (saved) load(saved);
    });
})();

// The visitor's whole visit: choose a photo, upload it (with progress), follow the job
// (server-sent events, polling as fallback), show the result, share it, delete it.
// Plain JavaScript, no build step. Text is set with textContent, never parsed as HTML.
(function () {
    "use strict";
    var $ = function (id) { return document.getElementById(id); };
    var body = document.body;
    var ORDER = ["upload", "queued", "encoding", "matching", "rendering", "succeeded"];
    var STATUS = {
        upload: "Sending your photo…",
        queued: "Waiting for a free helper…",
        encoding: "Looking for your face…",
        matching: "Comparing you with the celebrities…",
        rendering: "Making your videos — this part takes longest…",
        succeeded: "Done!"
    };
    var TITLES = {
        no_face: "We could not find a face",
        face_too_small: "Your face is too small in this photo",
        image_too_large: "This photo is too large",
        unsupported_image: "This file is not a photo we can read",
        corrupt_image: "This photo is damaged",
        empty_file: "This file is empty",
        rate_limited: "Too many photos at once",
        gallery_missing: "Not ready for photos yet",
        link_expired: "This link does not work",
        gone: "This result is gone"
    };
    var SECTIONS = ["start", "progress", "error", "result", "deleted"];
    var states = [];  // the states seen, in order (read by the browser tests)
    var chosen = null;

    function show(id) {
        SECTIONS.forEach(function (s) { $(s).hidden = s !== id; });
        body.dataset.view = id;
    }

    function el(tag, cls, text) {
        var node = document.createElement(tag);
        if (cls) node.className = cls;
        if (text != null) node.textContent = text;
        return node;
    }

    function pct(similarity) { return Math.round(100 * Number(similarity || 0)) + "\u00a0%"; }

    function tokenKey(id) { return "lookalike:owner:" + id; }
    function saveToken(id, token) { try { localStorage.setItem(tokenKey(id), token); } catch (e) { /* private mode */ } }
    function ownerToken(id) { try { return localStorage.getItem(tokenKey(id)); } catch (e) { return null; } }
    function dropToken(id) { try { localStorage.removeItem(tokenKey(id)); } catch (e) { /* ignore */ } }

    function errorOf(data, status) {
        var e = (data && data.error) || {};
        return {
            code: e.code || (status === 410 ? "gone" : "internal"),
            message: e.message || (status ? "The server answered " + status + "." : "Something went wrong."),
            advice: e.advice || (status >= 500 ? "Please try again in a moment." : ""),
            status: status
        };
    }

    function showError(err) {
        $("error-title").textContent = TITLES[err.code] || "We could not use this photo";
        var message = err.message || "Something went wrong.";
        $("error-message").textContent = message.charAt(0).toUpperCase() + message.slice(1);
        $("error-advice").textContent = err.advice || "";
        $("error-advice").hidden = !err.advice;
        $("error").dataset.code = err.code || "";
        show("error");
        $("error").focus();
    }

    // --- progress ---------------------------------------------------------------------------
    function setStage(state) {
        if (states[states.length - 1] !== state) states.push(state);
        body.dataset.states = states.join(",");
        var at = ORDER.indexOf(state);
        var items = $("stages").querySelectorAll("li");
        for (var i = 0; i < items.length; i++) {
            var li = items[i];
            li.classList.toggle("done", i < at);
            li.classList.toggle("current", i === at);
            if (i === at) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
        }
        $("upload-box").hidden = state !== "upload";
        $("status").textContent = STATUS[state] || "";
    }

    function upload(file) {
        return new Promise(function (resolve, reject) {
            var xhr = new XMLHttpRequest();
            var bar = $("upload-progress");
            xhr.open("POST", "/visit/jobs");
            xhr.responseType = "json";
            xhr.upload.onprogress = function (e) {
                if (!e.lengthComputable) return;
                var p = Math.round(100 * e.loaded / e.total);
                bar.value = p;
                bar.textContent = p + " %";
            };
            xhr.onload = function () {
                if (xhr.status === 202) resolve(xhr.response);
                else reject(errorOf(xhr.response, xhr.status));
            };
            xhr.onerror = function () {
                reject({ code: "network", message: "The upload did not get through.",
                         advice: "Check your connection (Wi-Fi or mobile data) and try again." });
            };
            var form = new FormData();
            form.append("photo", file, file.name || "photo.jpg");
            xhr.send(form);
        });
    }

    function getView(id, token) {
        return fetch("/visit/jobs/" + encodeURIComponent(id) + "?" + token, { cache: "no-store" })
            .then(function (r) {
                return r.json().catch(function () { return {}; }).then(function (data) {
                    if (!r.ok) throw errorOf(data, r.status);
                    return data;
                });
            });
    }

    function isFinal(state) { return state === "succeeded" || state === "failed"; }

    // Server-sent events while they work; polling when EventSource is missing or the stream breaks.
    function follow(id, token) {
        return new Promise(function (resolve, reject) {
            var done = false, source = null, timer = null;
            function finish(view) {
                if (done) return;
                done = true;
                if (source) source.close();
                clearTimeout(timer);
                resolve(view);
            }
            function fail(err) {
                if (done) return;
                done = true;
                if (source) source.close();
                clearTimeout(timer);
                reject(err);
            }
            function poll() {
                if (done) return;
                body.dataset.transport = "poll";
                getView(id, token).then(function (view) {
                    setStage(view.state);
                    if (isFinal(view.state)) finish(view); else timer = setTimeout(poll, 1500);
                }, function (err) {
                    if (err.status === 403 || err.status === 410) fail(err);
                    else timer = setTimeout(poll, 3000);
                });
            }
            if (!window.EventSource) { poll(); return; }
            body.dataset.transport = "sse";
            source = new EventSource("/visit/jobs/" + encodeURIComponent(id) + "/events?" + token);
            source.addEventListener("job", function (ev) {
                var view = JSON.parse(ev.data);
                setStage(view.state);
                if (isFinal(view.state)) {
                    source.close();
                    source = null;
                    getView(id, token).then(finish, fail);  // the full view: faces, share link
                }
            });
            source.addEventListener("deleted", function () { fail({ code: "gone", status: 410, message: "This result was deleted." }); });
            source.onerror = function () {
                if (source) source.close();
                source = null;
                if (!done) poll();
            };
        });
    }

    // --- result -------------------------------------------------------------------------------
    function clip(src, poster, label, fallback, name) {
        var wrap = el("div", "clip");
        var video = document.createElement("video");
        video.muted = true;
        video.defaultMuted = true;
        ["muted", "loop", "autoplay", "playsinline", "controls"].forEach(function (a) { video.setAttribute(a, ""); });
        video.preload = "auto";
        video.dataset.clip = name;
        video.setAttribute("aria-label", label);
        if (poster) video.poster = poster;
        var source = document.createElement("source");
        source.src = src;
        source.type = "video/mp4";
        // a browser without H.264 shows the animated WebP preview instead
        source.addEventListener("error", function () {
            if (!fallback) return;
            var img = el("img");
            img.src = fallback;
            img.alt = label;
            wrap.replaceChildren(img);
        });
        video.appendChild(source);
        wrap.appendChild(video);
        var p = video.play();
        if (p && p.catch) p.catch(function () { /* autoplay refused: the controls remain */ });
        return wrap;
    }

    function face(src, alt, caption) {
        var fig = el("figure");
        var img = el("img");
        img.src = src;
        img.alt = alt;
        img.width = 256;
        img.height = 256;
        fig.appendChild(img);
        fig.appendChild(el("figcaption", null, caption));
        return fig;
    }

    function newsCard(kind, match, art, faces) {
        var card = el("article", "card news " + kind);
        card.dataset.news = kind;
        card.appendChild(el("p", "label", kind === "good" ? "Good news" : "Bad news"));
        var who = el("h2", "who");
        who.appendChild(document.createTextNode(kind === "good" ? "You look like " : "…and a bit like "));
        who.appendChild(el("strong", "name", match.name));
        card.appendChild(who);
        var sim = el("p", "similarity");
        sim.appendChild(el("span", "pct", pct(match.similarity)));
        sim.appendChild(document.createTextNode(" similar"));
        card.appendChild(sim);
        var row = el("div", "faces");
        if (art.aligned) row.appendChild(face(art.aligned, "Your face", "You"));
        if (faces[kind]) row.appendChild(face(faces[kind], "The face of " + match.name, match.name));
        if (row.children.length) card.appendChild(row);
        var mp4 = art["morph_" + kind + "_mp4"];
        if (mp4) {
            card.appendChild(clip(mp4, art["poster_" + kind], "Video: your face turning into " + match.name,
                                  art["morph_" + kind + "_webp"], "morph_" + kind));
        }
        return card;
    }

    function download(href, text, filename) {
        var li = el("li");
        var a = el("a", "button", text);
        a.href = href;
        a.setAttribute("download", filename);
        li.appendChild(a);
        return li;
    }

    function renderResult(view, id, token, owner) {
        var result = view.result || {};
        var art = result.artifacts || {};
        var page = view.page || {};
        var faces = page.faces || {};
        var news = $("news");
        news.replaceChildren();
        if (result.good_news) news.appendChild(newsCard("good", result.good_news, art, faces));
        if (result.bad_news) news.appendChild(newsCard("bad", result.bad_news, art, faces));
        if (!result.good_news && !result.bad_news) news.appendChild(el("p", "card", "No celebrity matched."));

        $("smile").replaceChildren();
        $("smile-box").hidden = !art.smile_mp4;
        if (art.smile_mp4) $("smile").appendChild(clip(art.smile_mp4, art.aligned, "Video: your face smiling", art.smile_webp, "smile"));

        var list = $("matches");
        list.replaceChildren();
        (result.matches || []).forEach(function (m) {
            var li = el("li");
            li.appendChild(el("span", "name", m.name));
            li.appendChild(document.createTextNode(" — "));
            li.appendChild(el("span", "pct", pct(m.similarity)));
            if (m.category === "bad") li.appendChild(el("span", "cat", " (bad-news list)"));
            list.appendChild(li);
        });
        $("matches-box").hidden = !list.children.length;

        var dl = $("downloads");
        dl.replaceChildren();
        if (art.morph_good_mp4) dl.appendChild(download(art.morph_good_mp4, "Good-news video", "lookalike-good.mp4"));
        if (art.morph_bad_mp4) dl.appendChild(download(art.morph_bad_mp4, "Bad-news video", "lookalike-bad.mp4"));
        if (art.smile_mp4) dl.appendChild(download(art.smile_mp4, "Smile video", "lookalike-smile.mp4"));
        if (art.aligned) dl.appendChild(download(art.aligned, "My face (photo)", "lookalike-face.jpg"));
        $("downloads-box").hidden = !dl.children.length;

        $("share-url").value = page.share_url || location.href;
        $("native-share").hidden = !navigator.share;
        $("delete-box").hidden = !owner;
        $("delete").onclick = function () { remove(id, owner); };
        show("result");
        $("result").focus();
    }

    function remove(id, token) {
        var button = $("delete");
        button.disabled = true;
        button.textContent = "Deleting…";
        fetch("/visit/jobs/" + encodeURIComponent(id) + "?" + token, { method: "DELETE" }).then(function (r) {
            if (r.status === 204 || r.status === 410) {
                dropToken(id);
                document.querySelectorAll("video").forEach(function (v) { v.pause(); v.removeAttribute("src"); });
                $("result").querySelectorAll("video, img").forEach(function (n) { n.remove(); });
                show("deleted");
                $("deleted").focus();
                return;
            }
            return r.json().catch(function () { return {}; }).then(function (data) { showError(errorOf(data, r.status)); });
        }, function () {
            button.disabled = false;
            button.textContent = "Delete my photo";
            showError({ code: "network", message: "The photo could not be deleted: no connection.",
                        advice: "Check your connection and press the button again." });
        });
    }

    function finished(view, id, token, owner) {
        if (view.state === "failed") showError(view.error || {});
        else renderResult(view, id, token, owner);
    }

    function watch(id, token, owner) {
        show("progress");
        return follow(id, token).then(function (view) { finished(view, id, token, owner); }, showError);
    }

    // --- start --------------------------------------------------------------------------------
    function choose(input) {
        var file = input.files && input.files[0];
        if (!file) return;
        chosen = file;
        var img = $("preview");
        img.hidden = false;
        img.onerror = function () { img.hidden = true; };  // e.g. HEIC: the server reads it, the browser may not
        img.src = URL.createObjectURL(file);
        $("preview-name").textContent = file.name || "Your photo";
        $("preview-box").hidden = false;
        $("submit").disabled = false;
    }

    function start() {
        show("start");
        if (body.dataset.uploads === "off") {
            $("uploads-off").hidden = false;
            $("submit").disabled = true;
            return;
        }
        $("camera").addEventListener("change", function () { choose(this); });
        $("file").addEventListener("change", function () { choose(this); });
        $("upload").addEventListener("submit", function (e) {
            e.preventDefault();
            if (!chosen) return;
            show("progress");
            setStage("upload");
            $("progress").focus();
            upload(chosen).then(function (job) {
                saveToken(job.id, job.token);
                history.replaceState(null, "", "/?job=" + encodeURIComponent(job.id));
                setStage("queued");
                return watch(job.id, job.token, job.token);
            }, showError);
        });
    }

    function resume(id) {
        var token = ownerToken(id);
        if (!token) { start(); return; }
        getView(id, token).then(function (view) {
            if (isFinal(view.state)) finished(view, id, token, token);
            else { setStage(view.state); watch(id, token, token); }
        }, function (err) {
            if (err.status === 410 || err.status === 403) { dropToken(id); history.replaceState(null, "", "/"); start(); }
            else showError(err);
        });
    }

    function sharedResult() {
        var id = body.dataset.job, token = body.dataset.token;
        var owner = ownerToken(id);  // the uploader opening their own share link may still delete
        getView(id, token).then(function (view) {
            if (isFinal(view.state)) finished(view, id, token, owner);
            else { setStage(view.state); watch(id, token, owner); }
        }, showError);
    }

    function copyLink() {
        var input = $("share-url");
        var done = function () { $("copied").textContent = "Link copied."; };
        if (navigator.clipboard && window.isSecureContext) {
            navigator.clipboard.writeText(input.value).then(done, function () { input.select(); });
        } else {
            input.select();
            try { if (document.execCommand("copy")) done(); } catch (e) { /* the text stays selected */ }
        }
    }

    document.addEventListener("DOMContentLoaded", function () {
        $("copy").addEventListener("click", copyLink);
        $("native-share").addEventListener("click", function () {
            navigator.share({ title: "My Lookalike result", url: $("share-url").value }).catch(function () {});
        });
        if (body.dataset.mode === "result") { sharedResult(); return; }
        var id = new URLSearchParams(location.search).get("job");
        if (id) resume(id); else start();
    });
})();

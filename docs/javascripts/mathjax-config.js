// MathJax 2 settings for the formulas of this site, read before MathJax.js
// (served from the site itself, see docs/hooks/offline_math.py): typeset only
// what pymdownx.arithmatex marked, \( \) inline and \[ \] display, with the
// web fonts shipped alongside, no menu and no loading messages.
window.MathJax = {
  config: ["TeX-AMS-MML_HTMLorMML-full.js"],
  tex2jax: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: false,
    processEnvironments: true,
    ignoreClass: ".*",
    processClass: "arithmatex",
  },
  "HTML-CSS": { availableFonts: ["TeX"], preferredFont: "TeX", imageFont: null },
  showMathMenu: false,
  messageStyle: "none",
};

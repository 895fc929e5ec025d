// MathJax reads the formulas pymdownx.arithmatex marks (class "arithmatex": \( \) inline, \[ \] display).
// The menu is off: its speech options would load code from the network, and the site is offline.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex", enableMenu: false },
  svg: { fontCache: "global" },
};

// A confusion cell's test images (GET /runs/{i}/confusion/{true}/{predicted}), most confident first, each with
// its top 3; a digit opens in the layer view and the inspector, like a drawn one.
import { getJSON } from "./api.js";
import { t } from "./i18n.js";
import { digitCanvas, make } from "./render.js";

const LIMIT = 24;

export function cellImages(box, index, run, { open, show }) {
  let last = null;  // the cell shown: [true, predicted, classes, its answer]

  async function showCell(truth, predicted, classes) {
    box.replaceChildren(make("p", "hint", t("cell.loading")));
    box.scrollIntoView({ block: "nearest" });
    try {
      last = [truth, predicted, classes, await getJSON(`/runs/${index}/confusion/${truth}/${predicted}?limit=${LIMIT}`)];
      render();
    } catch (err) {
      last = null;
      box.replaceChildren(make("p", "error", err.message));
    }
  }

  function render() {
    if (!last) return;
    const [truth, predicted, classes, body] = last, names = { true: classes[truth], predicted: classes[predicted], count: body.count };
    const said = !body.count ? t("cell.empty", names) : truth === predicted ? t("cell.right", names) : t("cell.mistakes", names);
    const heading = make("p", "cell-said", said);
    Object.assign(box.dataset, { true: truth, predicted, count: body.count });
    const items = make("div", "cell-list");
    items.append(...body.images.map(image => item(image)));
    box.replaceChildren(heading, items);
    if (body.count > body.images.length) box.append(make("p", "hint", t("cell.more", { shown: body.images.length, count: body.count })));
  }

  function item(image) {
    const node = make(run.input === "draw" ? "button" : "div", "cell-item");
    node.dataset.index = image.index;
    if (image.pixels) {
      node.append(digitCanvas(image.pixels));
      node.title = t("cell.open", { index: image.index });
      node.addEventListener("click", () => {
        show("layers");
        open(image.pixels, { kind: "test", index: image.index, label: image.class }, true);
      });
    } else {
      const picture = make("img");
      picture.src = image.image;  // a data: URL of the test image, made by the server
      picture.alt = `#${image.index}`;
      node.append(picture);
    }
    const top = make("span", "top3");
    top.append(make("b", "", `#${image.index}`), ...image.top.map(p => make("span", "", `${p.class} ${(p.probability * 100).toFixed(1)}%`)));
    node.append(top);
    return node;
  }

  return { show: showCell, refresh: render };
}

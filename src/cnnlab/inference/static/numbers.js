// A number (issue 25): a line of digits drawn on the wide pad, or a photo of one, read by POST /predict. Shown:
// the boxes the reader found (over the pad, or over the photo), each digit as the network received it, and the
// number. A digit clicked is followed through the layers like a drawn digit (`onPick`).
import { t } from "./i18n.js";
import { digitCanvas, make } from "./render.js";

const SURE = "#16a34a", UNSURE = "#ea580c";  // a digit's box and frame: green, or orange when it is unsure

export function numberView({ overlay, card, onPick }) {
  let reading = null, photo = null, selected = 0;

  // A reading (POST /predict's answer); `picture` the uploaded photo as an image, or null for the pad.
  function show(answer, picture = null) {
    reading = answer;
    photo = picture;
    selected = Math.min(selected, answer.digits.length - 1);
    render();
  }

  function clear() {
    reading = null;
    photo = null;
    selected = 0;
    render();
  }

  function render() {
    const g = overlay.getContext("2d");
    g.clearRect(0, 0, overlay.width, overlay.height);
    card.hidden = !reading;
    card.replaceChildren();
    if (!reading) return;
    if (!photo) boxes(g, 1);
    const line = make("p", "number-line");
    line.append(make("span", "", t("number.read")), " ", make("b", "number", reading.number));
    card.append(line);
    if (photo) card.append(photoWithBoxes());
    const digits = make("div", "digits");
    reading.digits.forEach((digit, k) => digits.append(digitButton(digit, k)));
    card.append(digits, make("p", "hint", t(reading.unsure ? "number.unsure" : "number.pick")));
  }

  function boxes(g, scale) {
    reading.digits.forEach((digit, k) => {
      const [left, top, right, bottom] = digit.box.map(v => v * scale);
      g.strokeStyle = digit.unsure ? UNSURE : SURE;
      g.lineWidth = k === selected ? 4 : 2;
      g.strokeRect(left, top, right - left, bottom - top);
    });
  }

  function photoWithBoxes() {
    const canvas = make("canvas", "found-photo"), scale = Math.min(1, 640 / photo.width);
    canvas.width = Math.round(photo.width * scale);
    canvas.height = Math.round(photo.height * scale);
    const g = canvas.getContext("2d");
    g.drawImage(photo, 0, 0, canvas.width, canvas.height);
    boxes(g, scale);
    canvas.setAttribute("aria-label", t("number.photo", { number: reading.number }));
    return canvas;
  }

  function digitButton(digit, k) {
    const top = digit.top[0], button = make("button", `digit${k === selected ? " on" : ""}${digit.unsure ? " unsure" : ""}`);
    button.type = "button";
    button.dataset.index = k;
    const said = t(digit.unsure ? "number.digit.unsure" : "number.digit", { digit: top.class, probability: (top.probability * 100).toFixed(1) });
    button.setAttribute("aria-label", said);
    button.append(digitCanvas(digit.input), make("span", "", said));
    button.addEventListener("click", () => {
      selected = k;
      render();
      onPick(digit.input);
    });
    return button;
  }

  return {
    show,
    clear,
    render,
    get reading() { return reading; },
    get selected() { return reading ? reading.digits[selected] : null; },
  };
}

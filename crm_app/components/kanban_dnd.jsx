// Kanban drag and drop for Reflex, on top of @hello-pangea/dnd 18.0.1.
// Wrapped by kanban_dnd.py as dnd_board / dnd_column / dnd_card.
//
// The library's Droppable and Draggable take a render-prop function child, which Reflex
// cannot express, so these wrappers call it themselves and render the Reflex children
// inside the library's divs.
//
// Optimistic moves: the library wants the lists reordered synchronously in onDragEnd, but
// Reflex state comes back over the websocket one round trip later, so a dropped card would
// jump back to where it came from until then. DndBoard therefore keeps the moves it has
// reported as "pending" and the columns show them (cards are found by their `cardId` prop
// among a column's direct children, i.e. dnd_card must be what rx.foreach returns). The
// pending moves are dropped as soon as any column receives new children from Reflex (the
// server's answer, whatever it is) or after PENDING_TIMEOUT_MS if no state changed at all.
import React from "react";
import { DragDropContext, Droppable, Draggable } from "@hello-pangea/dnd";

const PENDING_TIMEOUT_MS = 2500;
const BoardContext = React.createContext(null);

// DragDropContext plus a div so the board can be styled (className/style/id/...).
// onMove(cardId, toColumnId, toIndex) fires only when a card is dropped on a column.
export function DndBoard({ onMove, optimistic = true, children, ...rest }) {
  const [pending, setPending] = React.useState([]);
  const cards = React.useRef(new Map()); // cardId -> last rendered card element

  React.useEffect(() => {
    if (!pending.length) return undefined;
    const timer = setTimeout(() => setPending([]), PENDING_TIMEOUT_MS);
    return () => clearTimeout(timer);
  }, [pending]);

  const onDragEnd = (result) => {
    const src = result.source;
    const dest = result.destination;
    if (!dest) return;
    const cardId = String(result.draggableId);
    const moved = src.droppableId !== dest.droppableId || src.index !== dest.index;
    if (optimistic && moved) {
      setPending((p) => [...p, { cardId, to: String(dest.droppableId), index: dest.index }]);
    }
    if (onMove) onMove(cardId, String(dest.droppableId), dest.index);
  };

  const ctx = React.useMemo(
    () => ({ pending, cards, clear: () => setPending((p) => (p.length ? [] : p)) }),
    [pending],
  );

  return (
    <BoardContext.Provider value={ctx}>
      <DragDropContext onDragEnd={onDragEnd}>
        <div {...rest}>{children}</div>
      </DragDropContext>
    </BoardContext.Provider>
  );
}

const cardIdOf = (el) =>
  React.isValidElement(el) && el.props && el.props.cardId != null ? String(el.props.cardId) : null;

// The column's children with the pending moves applied, cards re-indexed and keyed by id.
function useColumnItems(columnId, children) {
  const ctx = React.useContext(BoardContext);
  let items = React.Children.toArray(children);
  if (ctx) {
    for (const el of items) {
      const id = cardIdOf(el);
      if (id !== null) ctx.cards.current.set(id, el);
    }
    for (const move of ctx.pending) {
      items = items.filter((el) => cardIdOf(el) !== move.cardId);
      if (move.to === columnId) {
        const el = ctx.cards.current.get(move.cardId);
        if (el) {
          // index counts cards only; map it onto the position among all children
          let pos = items.length;
          let seen = 0;
          for (let i = 0; i < items.length; i++) {
            if (cardIdOf(items[i]) === null) continue;
            if (seen === move.index) { pos = i; break; }
            seen++;
          }
          items = [...items.slice(0, pos), el, ...items.slice(pos)];
        }
      }
    }
  }
  let n = 0;
  return items.map((el) => {
    const id = cardIdOf(el);
    return id === null ? el : React.cloneElement(el, { key: id, index: n++ });
  });
}

// Droppable column: the children (the cards) go inside the droppable div, followed by the
// placeholder that keeps room for a card being dragged over it.
// showPlaceholder={false}: a small drop target (a chip) that keeps its size while a card is over it.
export function DndColumn({ columnId, isDropDisabled, showPlaceholder = true, children, ...rest }) {
  const id = String(columnId);
  const ctx = React.useContext(BoardContext);
  const items = useColumnItems(id, children);
  // New children from Reflex = the server answered: forget the optimistic moves.
  const first = React.useRef(true);
  React.useEffect(() => {
    if (first.current) { first.current = false; return; }
    if (ctx) ctx.clear();
  }, [children]); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <Droppable droppableId={id} isDropDisabled={!!isDropDisabled}>
      {(provided, snapshot) => (
        <div
          {...rest}
          {...provided.droppableProps}
          ref={provided.innerRef}
          data-column-id={id}
          data-dragging-over={snapshot.isDraggingOver ? "true" : "false"}
        >
          {items}
          {showPlaceholder ? provided.placeholder : null}
        </div>
      )}
    </Droppable>
  );
}

// Draggable card; the whole card is the drag handle (mouse, touch, and keyboard: focus it,
// Space to lift, arrows to move, Space to drop, Escape to cancel). Extra props (className
// from Reflex's style/class_name, id, data-*, onClick, ...) go to the div; an inline
// `style` is merged under the library's positioning style.
export function DndCard({ cardId, index, isDragDisabled, children, style, ...rest }) {
  const id = String(cardId);
  return (
    <Draggable draggableId={id} index={Number(index)} isDragDisabled={!!isDragDisabled}>
      {(provided, snapshot) => (
        <div
          {...rest}
          {...provided.draggableProps}
          {...provided.dragHandleProps}
          ref={provided.innerRef}
          style={{ ...(style || {}), ...(provided.draggableProps.style || {}) }}
          data-card-id={id}
          data-dragging={snapshot.isDragging ? "true" : "false"}
        >
          {children}
        </div>
      )}
    </Draggable>
  );
}

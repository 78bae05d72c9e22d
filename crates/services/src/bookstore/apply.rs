//! The business logic: one handler per request. Each handler checks everything first and
//! changes state only once nothing can fail, so a rejection always leaves the state as it was.

use super::messages::{
    AddBook, CancelOrder, ChangePrice, OrderRequest, QueryBook, QueryCustomerOrders, QueryOrder,
    Request, Restock,
};
use super::responses::{
    BookStatus, CustomerOrders, OrderCancelled, OrderPlaced, OrderStatus, OrderSummary,
    RejectDetail, RejectReason, ResponseKind,
};
use super::state::{Book, BookstoreLimits, Customer, Customers, Order};
use super::Bookstore;
use keel::engine::{Outcome, Output};
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

/// A rejection on its way out: the reason and, for some reasons, a detail payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rejection {
    reason: RejectReason,
    detail: Option<RejectDetail>,
}

impl From<RejectReason> for Rejection {
    #[inline]
    fn from(reason: RejectReason) -> Self {
        Rejection {
            reason,
            detail: None,
        }
    }
}

impl Rejection {
    #[inline]
    fn limit(reason: RejectReason, limit: impl Into<u64>) -> Self {
        Rejection {
            reason,
            detail: Some(RejectDetail::Limit {
                limit: limit.into(),
            }),
        }
    }

    /// Writes the detail (if any) as the response payload and returns the outcome.
    #[inline]
    pub(super) fn write(self, out: &mut Output<'_>) -> Outcome {
        out.clear();
        if let Some(detail) = self.detail {
            // A detail that does not fit is dropped: the reason code alone still answers.
            if out.encode(&detail).is_ok() {
                out.set_kind(ResponseKind::RejectDetail.number());
            }
        }
        Outcome::Rejected(self.reason.code())
    }
}

type Handled = Result<(), Rejection>;

/// Writes the answer to a query; if it does not fit the response buffer, rejects instead.
#[inline]
fn answer<T: Serialize>(out: &mut Output<'_>, kind: ResponseKind, value: &T) -> Handled {
    match out.encode(value) {
        Ok(()) => {
            out.set_kind(kind.number());
            Ok(())
        }
        Err(_) => Err(RejectReason::ResponseTooLarge.into()),
    }
}

/// Writes the confirmation of a change. The change has happened, so this cannot reject: if
/// the (small, fixed-size) confirmation does not fit, the response has no payload.
#[inline]
fn confirm<T: Serialize>(out: &mut Output<'_>, kind: ResponseKind, value: &T) -> Handled {
    if out.encode(value).is_ok() {
        out.set_kind(kind.number());
    }
    Ok(())
}

fn check_price(limits: &BookstoreLimits, price_cents: u64) -> Handled {
    if price_cents == 0 || price_cents > limits.max_price_cents {
        return Err(Rejection::limit(
            RejectReason::InvalidPrice,
            limits.max_price_cents,
        ));
    }
    Ok(())
}

/// The checks of an order that involve its book: quantity, the price seen, the stock.
#[inline]
fn check_against_book(book: &Book, req: &OrderRequest, limits: &BookstoreLimits) -> Handled {
    if req.quantity == 0 || req.quantity > limits.max_quantity_per_order {
        let reason = RejectReason::InvalidQuantity;
        return Err(Rejection::limit(reason, limits.max_quantity_per_order));
    }
    let price_cents = book.price_cents;
    if req.seen_price_cents.is_some_and(|seen| seen != price_cents) {
        let detail = RejectDetail::CurrentPrice {
            book: req.book,
            price_cents,
        };
        return Err(Rejection {
            reason: RejectReason::PriceChanged,
            detail: Some(detail),
        });
    }
    if book.stock < u64::from(req.quantity) {
        let detail = RejectDetail::Available {
            book: req.book,
            stock: book.stock,
        };
        return Err(Rejection {
            reason: RejectReason::OutOfStock,
            detail: Some(detail),
        });
    }
    Ok(())
}

/// The customer's entry, unless a customer limit forbids another order.
#[inline]
fn customer_entry<'a>(
    customers: &'a mut Customers,
    limits: &BookstoreLimits,
    customer: u64,
) -> Result<&'a mut Customer, Rejection> {
    if customer >= u64::from(limits.max_customers) {
        return Err(Rejection::limit(
            RejectReason::CustomerLimit,
            limits.max_customers,
        ));
    }
    let entry = &mut customers.entries[customer as usize];
    if entry.count >= limits.max_orders_per_customer {
        let limit = limits.max_orders_per_customer;
        return Err(Rejection::limit(RejectReason::CustomerOrderLimit, limit));
    }
    Ok(entry)
}

impl Bookstore {
    /// Applies one decoded request at time `now_ns` (the message's timestamp).
    #[inline]
    pub(super) fn execute(
        &mut self,
        request: Request,
        now_ns: u64,
        out: &mut Output<'_>,
    ) -> Handled {
        match request {
            Request::PlaceOrder(order) => self.place_order(order, now_ns, out),
            Request::CancelOrder(cancel) => self.cancel_order(cancel, now_ns, out),
            Request::ChangePrice(change) => self.change_price(change, out),
            Request::Restock(restock) => self.restock(restock, out),
            Request::AddBook(add) => self.add_book(add, out),
            Request::QueryBook(query) => self.query_book(query, out),
            Request::QueryOrder(query) => self.query_order(query, out),
            Request::QueryCustomerOrders(query) => self.query_customer_orders(query, out),
        }
    }

    #[inline]
    fn book_mut(&mut self, book: u32) -> Result<&mut Book, Rejection> {
        match self.books.get_mut(book as usize) {
            Some(Some(b)) => Ok(b),
            _ => Err(RejectReason::UnknownBook.into()),
        }
    }

    /// Checks, in this order: book listed, quantity, price seen, stock, order limit, customer
    /// limits. Then records the order at the book's current price and takes the stock.
    #[inline]
    fn place_order(&mut self, req: OrderRequest, now_ns: u64, out: &mut Output<'_>) -> Handled {
        let limits = self.limits;
        let book = match self.books.get_mut(req.book as usize) {
            Some(Some(b)) => b,
            _ => return Err(RejectReason::UnknownBook.into()),
        };
        check_against_book(book, &req, &limits)?;
        let quantity = u64::from(req.quantity);
        if self.orders.len() >= limits.max_orders as usize {
            return Err(Rejection::limit(
                RejectReason::OrderLimit,
                limits.max_orders,
            ));
        }
        let customer = customer_entry(&mut self.customers, &limits, req.customer)?;
        // Nothing can fail from here on.
        let id = self.orders.len() as u32 + 1;
        let order = Order {
            customer: req.customer,
            book: req.book,
            quantity: req.quantity,
            price_cents: book.price_cents,
            placed_ns: now_ns,
            cancelled_ns: 0,
            status: OrderStatus::Open,
            previous: customer.newest,
        };
        customer.newest = id;
        customer.count += 1;
        let first_order = customer.count == 1;
        self.customers.active += u32::from(first_order);
        let before = book.stock;
        book.stock -= quantity;
        self.digest.stock(req.book, Some(before), book.stock);
        self.digest.add_order(id, &order);
        debug_assert!(
            self.orders.len() < self.orders.capacity(),
            "reserved at construction"
        );
        self.orders.push(order);
        self.open_orders += 1;
        let placed = OrderPlaced {
            order: u64::from(id),
            book: req.book,
            quantity: req.quantity,
            price_cents: order.price_cents,
            total_cents: order.price_cents.saturating_mul(quantity),
            remaining_stock: book.stock,
        };
        confirm(out, ResponseKind::OrderPlaced, &placed)
    }

    /// Checks: order exists, belongs to the customer, is still open. Then cancels it (at
    /// `now_ns`) and returns its copies to stock.
    fn cancel_order(&mut self, req: CancelOrder, now_ns: u64, out: &mut Output<'_>) -> Handled {
        let index = match req
            .order
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
        {
            Some(i) if i < self.orders.len() => i,
            _ => return Err(RejectReason::UnknownOrder.into()),
        };
        let order = &mut self.orders[index];
        if order.customer != req.customer {
            return Err(RejectReason::NotYourOrder.into());
        }
        if order.status == OrderStatus::Cancelled {
            return Err(RejectReason::AlreadyCancelled.into());
        }
        let id = index as u32 + 1;
        self.digest.remove_order(id, order);
        order.status = OrderStatus::Cancelled;
        order.cancelled_ns = now_ns;
        self.digest.add_order(id, order);
        self.open_orders -= 1;
        let (book_id, quantity) = (order.book, order.quantity);
        // Books are never removed, so the book is there (checked by `check_consistency`).
        let mut stock = 0;
        if let Some(Some(book)) = self.books.get_mut(book_id as usize) {
            let before = book.stock;
            book.stock = book.stock.saturating_add(u64::from(quantity));
            stock = book.stock;
            self.digest.stock(book_id, Some(before), stock);
        }
        let cancelled = OrderCancelled {
            order: req.order,
            book: book_id,
            quantity,
            stock,
        };
        confirm(out, ResponseKind::OrderCancelled, &cancelled)
    }

    fn change_price(&mut self, req: ChangePrice, out: &mut Output<'_>) -> Handled {
        let limits = self.limits;
        let book = self.book_mut(req.book)?;
        check_price(&limits, req.price_cents)?;
        let before = book.price_cents;
        book.price_cents = req.price_cents;
        let status = BookStatus {
            book: req.book,
            price_cents: book.price_cents,
            stock: book.stock,
        };
        self.digest.price(req.book, Some(before), req.price_cents);
        confirm(out, ResponseKind::BookStatus, &status)
    }

    fn restock(&mut self, req: Restock, out: &mut Output<'_>) -> Handled {
        let max_stock = self.limits.max_stock_per_book;
        let book = self.book_mut(req.book)?;
        if req.quantity == 0 {
            return Err(RejectReason::InvalidQuantity.into());
        }
        let stock = book.stock.saturating_add(u64::from(req.quantity));
        if stock > max_stock {
            return Err(Rejection::limit(RejectReason::StockLimit, max_stock));
        }
        let before = book.stock;
        book.stock = stock;
        let status = BookStatus {
            book: req.book,
            price_cents: book.price_cents,
            stock,
        };
        self.digest.stock(req.book, Some(before), stock);
        confirm(out, ResponseKind::BookStatus, &status)
    }

    /// Checks: id below `max_books`, not listed yet, price, stock, title length.
    fn add_book(&mut self, req: AddBook, out: &mut Output<'_>) -> Handled {
        let limits = self.limits;
        let id = req.book as usize;
        if req.book >= limits.max_books {
            return Err(Rejection::limit(RejectReason::BookLimit, limits.max_books));
        }
        if matches!(self.books.get(id), Some(Some(_))) {
            return Err(RejectReason::DuplicateBook.into());
        }
        check_price(&limits, req.price_cents)?;
        if req.stock > limits.max_stock_per_book {
            return Err(Rejection::limit(
                RejectReason::StockLimit,
                limits.max_stock_per_book,
            ));
        }
        if req.title.len() > limits.max_title_bytes as usize {
            return Err(Rejection::limit(
                RejectReason::TitleTooLong,
                limits.max_title_bytes,
            ));
        }
        if self.books.len() <= id {
            self.books.resize_with(id + 1, || None);
        }
        let book = Book {
            price_cents: req.price_cents,
            stock: req.stock,
            title: req.title,
        };
        self.digest.add_book(req.book, &book);
        self.books[id] = Some(book);
        self.book_count += 1;
        let status = BookStatus {
            book: req.book,
            price_cents: req.price_cents,
            stock: req.stock,
        };
        confirm(out, ResponseKind::BookStatus, &status)
    }

    fn query_book(&self, req: QueryBook, out: &mut Output<'_>) -> Handled {
        let info = self.book(req.book).ok_or(RejectReason::UnknownBook)?;
        answer(out, ResponseKind::BookInfo, &info)
    }

    fn query_order(&self, req: QueryOrder, out: &mut Output<'_>) -> Handled {
        let info = self.order(req.order).ok_or(RejectReason::UnknownOrder)?;
        answer(out, ResponseKind::OrderInfo, &info)
    }

    /// A page of at most `orders_per_page` orders, newest first, walking the customer's chain.
    /// A customer without orders (any id) gets an empty page, not a rejection.
    fn query_customer_orders(&self, req: QueryCustomerOrders, out: &mut Output<'_>) -> Handled {
        let customer = self
            .customers
            .get(req.customer)
            .copied()
            .unwrap_or_default();
        let first = match req.before_order {
            0 => customer.newest,
            before => match self.order(before) {
                None => return Err(RejectReason::UnknownOrder.into()),
                Some(o) if o.customer != req.customer => {
                    return Err(RejectReason::NotYourOrder.into())
                }
                Some(_) => self.orders[before as usize - 1].previous,
            },
        };
        let (mut len, mut last, mut id) = (0u32, 0u32, first);
        while id != 0 && len < self.limits.orders_per_page {
            (len, last, id) = (len + 1, id, self.orders[id as usize - 1].previous);
        }
        let page = CustomerOrders {
            customer: req.customer,
            total: customer.count,
            next_before: if id == 0 { 0 } else { u64::from(last) },
            orders: Chain {
                orders: &self.orders,
                first,
                len,
            },
        };
        answer(out, ResponseKind::CustomerOrders, &page)
    }
}

/// `len` orders of one customer's chain from order id `first`, serialized as a sequence of
/// [`OrderSummary`] without collecting them.
struct Chain<'a> {
    orders: &'a [Order],
    first: u32,
    len: u32,
}

impl Serialize for Chain<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len as usize))?;
        let mut id = self.first;
        for _ in 0..self.len {
            let o = &self.orders[id as usize - 1];
            seq.serialize_element(&OrderSummary {
                order: u64::from(id),
                book: o.book,
                quantity: o.quantity,
                price_cents: o.price_cents,
                status: o.status,
            })?;
            id = o.previous;
        }
        seq.end()
    }
}

//! The business logic: one handler per request, answering a [`Reply`] or a [`Rejected`].
//! Each handler checks everything first and changes state only once nothing can fail, so a
//! rejection always leaves the state as it was.

use super::messages::{
    AddBook, CancelOrder, ChangePrice, OrderRequest, QueryBook, QueryCustomerOrders, QueryOrder,
    Request, Restock,
};
use super::responses::{
    BookStatus, CustomerOrders, OrderCancelled, OrderChain, OrderPlaced, OrderStatus, RejectDetail,
    RejectReason, Rejected, Reply,
};
use super::state::{Book, BookstoreLimits, Customer, Customers, Order};
use super::Bookstore;

type Handled<'a> = Result<Reply<'a>, Rejected>;

fn check_price(limits: &BookstoreLimits, price_cents: u64) -> Result<(), Rejected> {
    if price_cents == 0 || price_cents > limits.max_price_cents {
        return Err(Rejected::limit(
            RejectReason::InvalidPrice,
            limits.max_price_cents,
        ));
    }
    Ok(())
}

/// The checks of an order that involve its book: quantity, the price seen, the stock.
#[inline]
fn check_against_book(
    book: &Book,
    req: &OrderRequest,
    limits: &BookstoreLimits,
) -> Result<(), Rejected> {
    if req.quantity == 0 || req.quantity > limits.max_quantity_per_order {
        let reason = RejectReason::InvalidQuantity;
        return Err(Rejected::limit(reason, limits.max_quantity_per_order));
    }
    let price_cents = book.price_cents;
    if req.seen_price_cents.is_some_and(|seen| seen != price_cents) {
        let detail = RejectDetail::CurrentPrice {
            book: req.book,
            price_cents,
        };
        return Err(Rejected {
            reason: RejectReason::PriceChanged,
            detail: Some(detail),
        });
    }
    if book.stock < u64::from(req.quantity) {
        let detail = RejectDetail::Available {
            book: req.book,
            stock: book.stock,
        };
        return Err(Rejected {
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
) -> Result<&'a mut Customer, Rejected> {
    if customer >= u64::from(limits.max_customers) {
        return Err(Rejected::limit(
            RejectReason::CustomerLimit,
            limits.max_customers,
        ));
    }
    let entry = &mut customers.entries[customer as usize];
    if entry.count >= limits.max_orders_per_customer {
        let limit = limits.max_orders_per_customer;
        return Err(Rejected::limit(RejectReason::CustomerOrderLimit, limit));
    }
    Ok(entry)
}

impl Bookstore {
    /// Applies one decoded request at time `now_ns` (the message's timestamp).
    #[inline]
    pub(super) fn execute(&mut self, request: Request, now_ns: u64) -> Handled<'_> {
        match request {
            Request::PlaceOrder(order) => self.place_order(order, now_ns),
            Request::CancelOrder(cancel) => self.cancel_order(cancel, now_ns),
            Request::ChangePrice(change) => self.change_price(change),
            Request::Restock(restock) => self.restock(restock),
            Request::AddBook(add) => self.add_book(add),
            Request::QueryBook(query) => self.query_book(query),
            Request::QueryOrder(query) => self.query_order(query),
            Request::QueryCustomerOrders(query) => self.query_customer_orders(query),
        }
    }

    #[inline]
    fn book_mut(&mut self, book: u32) -> Result<&mut Book, Rejected> {
        match self.state.books.get_mut(book as usize) {
            Some(Some(b)) => Ok(b),
            _ => Err(RejectReason::UnknownBook.into()),
        }
    }

    /// Checks, in this order: book listed, quantity, price seen, stock, order limit, customer
    /// limits. Then records the order at the book's current price and takes the stock.
    #[inline]
    fn place_order(&mut self, req: OrderRequest, now_ns: u64) -> Handled<'_> {
        let limits = self.limits;
        let book = match self.state.books.get_mut(req.book as usize) {
            Some(Some(b)) => b,
            _ => return Err(RejectReason::UnknownBook.into()),
        };
        check_against_book(book, &req, &limits)?;
        let quantity = u64::from(req.quantity);
        if self.state.orders.len() >= limits.max_orders as usize {
            return Err(Rejected::limit(RejectReason::OrderLimit, limits.max_orders));
        }
        let customer = customer_entry(&mut self.customers, &limits, req.customer)?;
        // Nothing can fail from here on.
        let id = self.state.orders.len() as u32 + 1;
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
            self.state.orders.len() < self.state.orders.capacity(),
            "reserved at construction"
        );
        self.state.orders.push(order);
        self.open_orders += 1;
        let placed = OrderPlaced {
            order: u64::from(id),
            book: req.book,
            quantity: req.quantity,
            price_cents: order.price_cents,
            total_cents: order.price_cents.saturating_mul(quantity),
            remaining_stock: book.stock,
        };
        Ok(Reply::OrderPlaced(placed))
    }

    /// Checks: order exists, belongs to the customer, is still open. Then cancels it (at
    /// `now_ns`) and returns its copies to stock.
    fn cancel_order(&mut self, req: CancelOrder, now_ns: u64) -> Handled<'_> {
        let index = match req
            .order
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
        {
            Some(i) if i < self.state.orders.len() => i,
            _ => return Err(RejectReason::UnknownOrder.into()),
        };
        let order = &mut self.state.orders[index];
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
        if let Some(Some(book)) = self.state.books.get_mut(book_id as usize) {
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
        Ok(Reply::OrderCancelled(cancelled))
    }

    fn change_price(&mut self, req: ChangePrice) -> Handled<'_> {
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
        Ok(Reply::BookStatus(status))
    }

    fn restock(&mut self, req: Restock) -> Handled<'_> {
        let max_stock = self.limits.max_stock_per_book;
        let book = self.book_mut(req.book)?;
        if req.quantity == 0 {
            return Err(RejectReason::InvalidQuantity.into());
        }
        let stock = book.stock.saturating_add(u64::from(req.quantity));
        if stock > max_stock {
            return Err(Rejected::limit(RejectReason::StockLimit, max_stock));
        }
        let before = book.stock;
        book.stock = stock;
        let status = BookStatus {
            book: req.book,
            price_cents: book.price_cents,
            stock,
        };
        self.digest.stock(req.book, Some(before), stock);
        Ok(Reply::BookStatus(status))
    }

    /// Checks: id below `max_books`, not listed yet, price, stock, title length.
    fn add_book(&mut self, req: AddBook) -> Handled<'_> {
        let limits = self.limits;
        let id = req.book as usize;
        if req.book >= limits.max_books {
            return Err(Rejected::limit(RejectReason::BookLimit, limits.max_books));
        }
        if matches!(self.state.books.get(id), Some(Some(_))) {
            return Err(RejectReason::DuplicateBook.into());
        }
        check_price(&limits, req.price_cents)?;
        if req.stock > limits.max_stock_per_book {
            return Err(Rejected::limit(
                RejectReason::StockLimit,
                limits.max_stock_per_book,
            ));
        }
        if req.title.len() > limits.max_title_bytes as usize {
            return Err(Rejected::limit(
                RejectReason::TitleTooLong,
                limits.max_title_bytes,
            ));
        }
        if self.state.books.len() <= id {
            self.state.books.resize_with(id + 1, || None);
        }
        let book = Book {
            price_cents: req.price_cents,
            stock: req.stock,
            title: req.title,
        };
        self.digest.add_book(req.book, &book);
        self.state.books[id] = Some(book);
        self.book_count += 1;
        let status = BookStatus {
            book: req.book,
            price_cents: req.price_cents,
            stock: req.stock,
        };
        Ok(Reply::BookStatus(status))
    }

    fn query_book(&self, req: QueryBook) -> Handled<'_> {
        let info = self.book(req.book).ok_or(RejectReason::UnknownBook)?;
        Ok(Reply::BookInfo(info))
    }

    fn query_order(&self, req: QueryOrder) -> Handled<'_> {
        let info = self.order(req.order).ok_or(RejectReason::UnknownOrder)?;
        Ok(Reply::OrderInfo(info))
    }

    /// A page of at most `orders_per_page` orders, newest first, walking the customer's chain.
    /// A customer without orders (any id) gets an empty page, not a rejection.
    fn query_customer_orders(&self, req: QueryCustomerOrders) -> Handled<'_> {
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
                Some(_) => self.state.orders[before as usize - 1].previous,
            },
        };
        let (mut len, mut last, mut id) = (0u32, 0u32, first);
        while id != 0 && len < self.limits.orders_per_page {
            (len, last, id) = (len + 1, id, self.state.orders[id as usize - 1].previous);
        }
        let page = CustomerOrders {
            customer: req.customer,
            total: customer.count,
            next_before: if id == 0 { 0 } else { u64::from(last) },
            orders: OrderChain {
                orders: &self.state.orders,
                first,
                len,
            },
        };
        Ok(Reply::CustomerOrders(page))
    }
}
